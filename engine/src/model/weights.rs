//! Checked access to checkpoint tensors: memory-mapped safetensors (or seeded random weights for the real
//! geometry without a download), with typed errors that name the tensor, and byte accounting from headers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::lora::Adapters;
use crate::error::{EngineError, Result};

/// Where tensors come from.
enum Source {
    /// A memory-mapped safetensors file; nothing is read until a tensor is requested.
    File { path: PathBuf, tensors: MmapedSafetensors },
    /// Deterministic pseudo-random weights (uniform, small), for building the real geometry without a download.
    Random { seed: u64 },
}

/// A view of a weight source under a key prefix, producing tensors in the compute dtype on the compute device.
///
/// Shaped like candle's `VarBuilder` (`pp` walks the checkpoint's key hierarchy) but every failure is an
/// [`EngineError`] naming the key and, for shape mismatches, the expected and found shapes.
#[derive(Clone)]
pub struct Weights {
    source: Arc<Source>,
    /// LoRA adapters merged into the weights they change as those load.
    adapters: Option<Arc<Adapters>>,
    prefix: String,
    dtype: DType,
    /// The dtype of the linear layers' weight matrices: the compute dtype, or bf16 on the CPU in bf16 precision
    /// (model/linear.rs).
    matrix_dtype: DType,
    device: Device,
}

impl Weights {
    /// Memory-maps a safetensors file, or every shard named by a `model.safetensors.index.json` (a path ending in
    /// `.json`); only the headers are parsed now.
    pub fn open(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                hint: "the model folder is incomplete; fetch ACE-Step/Ace-Step1.5 again".into(),
            });
        }
        #[cfg(target_arch = "x86_64")]
        if device.is_cpu() {
            crate::kernels::cpu::isa::Isa::current().map_err(EngineError::invalid)?;
        }
        let corrupt = |message: String| EngineError::CorruptWeights { path: path.to_path_buf(), message };
        let shards = if path.extension().is_some_and(|e| e == "json") { shard_files(path)? } else { vec![] };
        // SAFETY: the files are opened read-only; like every mmap reader we rely on nobody truncating them
        // while the engine runs.
        let tensors = if shards.is_empty() {
            unsafe { MmapedSafetensors::new(path) }
        } else {
            unsafe { MmapedSafetensors::multi(&shards) }
        }
        .map_err(|e| corrupt(e.to_string()))?;
        Ok(Self::from_source(Source::File { path: path.to_path_buf(), tensors }, dtype, device))
    }

    /// Seeded random weights: every requested tensor gets values uniform in ±0.02 (norm weights 1),
    /// derived from the seed and the key, so the same key always yields the same tensor.
    pub fn random(seed: u64, dtype: DType, device: &Device) -> Self {
        Self::from_source(Source::Random { seed }, dtype, device)
    }

    fn from_source(source: Source, dtype: DType, device: &Device) -> Self {
        Self {
            source: Arc::new(source),
            adapters: None,
            prefix: String::new(),
            dtype,
            matrix_dtype: dtype,
            device: device.clone(),
        }
    }

    /// The same source with `adapters` merged into every weight they change when it loads (in f32, before the
    /// conversion to the compute dtype): every consumer, streamed DiT blocks included, gets merged weights of the
    /// stored shapes, so byte accounting from the headers stays right.
    pub fn with_adapters(&self, adapters: Arc<Adapters>) -> Self {
        Self { adapters: Some(adapters), ..self.clone() }
    }

    /// A view one level further down the key hierarchy (`vb.pp("layers").pp(3)`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut next = self.clone();
        next.prefix = self.key(&name.to_string());
        next
    }

    /// The same source producing tensors on another device.
    pub fn on_device(&self, device: &Device) -> Self {
        Self { device: device.clone(), ..self.clone() }
    }

    /// The same source producing tensors in another dtype (e.g. f32 for a numerically sensitive layer), weight
    /// matrices included.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        Self { dtype, matrix_dtype: dtype, ..self.clone() }
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The same source producing the linear layers' weight matrices in `dtype` (see [`Weights::matrix_dtype`]).
    pub fn with_matrix_dtype(&self, dtype: DType) -> Self {
        Self { matrix_dtype: dtype, ..self.clone() }
    }

    /// The dtype the linear layers load their weight matrices in: the compute dtype unless
    /// [`Weights::with_matrix_dtype`] said otherwise (bf16 on the CPU in bf16 precision, whose panels multiply bf16
    /// weights by f32 activations).
    pub fn matrix_dtype(&self) -> DType {
        self.matrix_dtype
    }

    /// The compute device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the tensor `name` exists under this prefix (random sources contain everything).
    pub fn contains(&self, name: &str) -> bool {
        match &*self.source {
            Source::File { tensors, .. } => tensors.get(&self.key(name)).is_ok(),
            Source::Random { .. } => true,
        }
    }

    /// The stored shape of the tensor `name` under this prefix, from the file header (`None` when absent or for
    /// random sources).
    pub fn stored_shape(&self, name: &str) -> Option<Vec<usize>> {
        match &*self.source {
            Source::File { tensors, .. } => tensors.get(&self.key(name)).ok().map(|view| view.shape().to_vec()),
            Source::Random { .. } => None,
        }
    }

    /// Loads `name`, checks its shape and converts it to the compute dtype and device.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        self.get_as(shape, name, self.dtype)
    }

    /// Loads `name` like [`Weights::get`] but in an explicit dtype (e.g. f32 for norms on a bf16 device).
    pub fn get_as(&self, shape: &[usize], name: &str, dtype: DType) -> Result<Tensor> {
        let key = self.key(name);
        let tensor = match &*self.source {
            Source::File { path, tensors } => {
                let view = tensors
                    .get(&key)
                    .map_err(|_| EngineError::MissingTensor { name: key.clone(), file: path.clone() })?;
                if view.shape() != shape {
                    return Err(EngineError::TensorShape {
                        name: key,
                        expected: shape.to_vec(),
                        found: view.shape().to_vec(),
                    });
                }
                tensors
                    .load(&key, &self.device)
                    .map_err(|e| EngineError::CorruptWeights { path: path.clone(), message: format!("{key}: {e}") })?
            }
            Source::Random { seed } => random_tensor(*seed, &key, shape, &self.device)?,
        };
        let merged = match &self.adapters {
            Some(adapters) => adapters.merge(&key, &tensor)?,
            None => None,
        };
        Ok(merged.unwrap_or(tensor).to_dtype(dtype)?)
    }

    /// Bytes that the tensors under `prefix` (relative to this view) occupy once loaded in the compute
    /// dtype, read from the file header without touching the data. `None` for random sources.
    pub fn bytes_under(&self, prefix: &str) -> Option<u64> {
        let shapes = self.shapes_under(prefix)?;
        let elements: usize = shapes.iter().map(|(_, shape)| shape.iter().product::<usize>()).sum();
        Some((elements * self.dtype.size_in_bytes()) as u64)
    }

    /// Full keys and stored shapes of the tensors under `prefix` (relative to this view), read from the file
    /// header without touching the data. `None` for random sources.
    pub fn shapes_under(&self, prefix: &str) -> Option<Vec<(String, Vec<usize>)>> {
        let full = self.key(prefix);
        match &*self.source {
            Source::File { tensors, .. } => Some(
                tensors
                    .tensors()
                    .into_iter()
                    .filter(|(name, _)| full.is_empty() || name == &full || name.starts_with(&format!("{full}.")))
                    .map(|(name, view)| (name, view.shape().to_vec()))
                    .collect(),
            ),
            Source::Random { .. } => None,
        }
    }

    /// Number of tensors in the underlying file (`None` for random sources).
    pub fn tensor_count(&self) -> Option<usize> {
        match &*self.source {
            Source::File { tensors, .. } => Some(tensors.tensors().len()),
            Source::Random { .. } => None,
        }
    }
}

/// The shard files a `model.safetensors.index.json` names in its `weight_map` (each once),
/// resolved beside the index; every one must exist.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let folder = index.parent().unwrap_or(Path::new("."));
    let mut shards = Vec::new();
    for name in shard_names(index)? {
        let shard = folder.join(name);
        if !shard.is_file() {
            return Err(EngineError::MissingFile {
                path: shard,
                hint: format!("the shard index names it; download every shard listed in `{}`", index.display()),
            });
        }
        shards.push(shard);
    }
    Ok(shards)
}

/// The shard file names a `model.safetensors.index.json` names in its `weight_map`, each once in order of first
/// mention; each must be a plain file name (the shards lie beside the index) and there must be at least one.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let corrupt = |message: String| EngineError::CorruptWeights { path: index.to_path_buf(), message };
    let text =
        std::fs::read_to_string(index).map_err(|source| EngineError::Io { path: index.to_path_buf(), source })?;
    let parsed: Index =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("not a safetensors shard index: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for file in parsed.weight_map.into_values() {
        let name = Path::new(&file);
        if name.components().count() != 1 || name.is_absolute() {
            return Err(corrupt(format!("shard `{file}` is not a file name beside the index")));
        }
        if !names.contains(&file) {
            names.push(file);
        }
    }
    if names.is_empty() {
        return Err(corrupt("the shard index's weight_map is empty".into()));
    }
    Ok(names)
}

/// SplitMix64: a tiny, fast, well-mixed generator for deterministic random weights and seeds.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_tensor(seed: u64, key: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let is_norm = key.ends_with("norm.weight") || key.ends_with("layernorm.weight") || key.ends_with("weight_g");
    let values: Vec<f32> = if is_norm {
        vec![1.0; n]
    } else {
        let mut state = key.bytes().fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
        (0..n).map(|_| ((splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04).collect()
    };
    Ok(Tensor::from_vec(values, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep").join(path)
    }

    #[test]
    fn shape_mismatch_names_tensor_and_both_shapes() {
        let w = Weights::open(&fixture("acestep-v15-turbo/model.safetensors"), DType::F32, &Device::Cpu).unwrap();
        let err = w.pp("decoder").get(&[64, 190, 2], "proj_in.1.weight").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EngineError::TensorShape { .. }), "{msg}");
        assert!(
            msg.contains("decoder.proj_in.1.weight") && msg.contains("[64, 190, 2]") && msg.contains("[64, 192, 2]"),
            "{msg}"
        );
    }

    #[test]
    fn missing_tensor_and_missing_file_are_typed() {
        let w = Weights::open(&fixture("acestep-v15-turbo/model.safetensors"), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(w.get(&[1], "decoder.nope").unwrap_err(), EngineError::MissingTensor { .. }));
        let missing = Weights::open(&fixture("acestep-v15-turbo/absent.safetensors"), DType::F32, &Device::Cpu);
        assert!(matches!(missing.err().unwrap(), EngineError::MissingFile { .. }));
    }

    #[test]
    fn corrupt_file_is_reported_not_panicked() {
        let dir = std::env::temp_dir().join(format!("retake-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        std::fs::write(&path, b"this is not a safetensors file").unwrap();
        let err = Weights::open(&path, DType::F32, &Device::Cpu).err().unwrap();
        assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bf16_checkpoint_upcasts_and_counts_bytes() {
        let w = Weights::open(&fixture("acestep-v15-turbo/model.safetensors"), DType::F32, &Device::Cpu).unwrap();
        let t = w.get(&[1, 1, 64], "null_condition_emb").unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(w.bytes_under("null_condition_emb"), Some(64 * 4));
        assert_eq!(w.tensor_count(), Some(209));
        // `decoder.layers.1` must not count `decoder.layers.10`-style siblings.
        let layer = w.bytes_under("decoder.layers.1").unwrap();
        assert!(layer > 0 && layer < w.bytes_under("decoder.layers").unwrap());
    }

    #[test]
    fn random_weights_are_deterministic_per_key() {
        let a = Weights::random(7, DType::F32, &Device::Cpu).get(&[4, 4], "x.weight").unwrap();
        let b = Weights::random(7, DType::F32, &Device::Cpu).get(&[4, 4], "x.weight").unwrap();
        let c = Weights::random(7, DType::F32, &Device::Cpu).get(&[4, 4], "y.weight").unwrap();
        let diff =
            |p: &Tensor, q: &Tensor| (p - q).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 0.0);
    }
}
