//! A model folder in the layout of the HF repo `ACE-Step/Ace-Step1.5` (docs/acestep-model.md §1): configs parsed up
//! front, weights memory-mapped lazily per component so a caller can keep only one component resident.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use super::config::{read_json, AceStepConfig, Qwen3Config, VaeConfig};
use super::linear::CpuPrecision;
use super::lora::{Adapters, LoraSpec};
use super::variant::{ScheduleKind, Variant};
use super::weights::Weights;
use crate::error::{EngineError, Result};
use crate::kernels::storage::runs_cpu_f32;

/// Sub-folder of the DiT / condition encoder / audio tokenizer.
pub const ACESTEP_DIR: &str = "acestep-v15-turbo";
/// Sub-folder of the VAE.
pub const VAE_DIR: &str = "vae";
/// Sub-folder of the text encoder.
pub const TEXT_DIR: &str = "Qwen3-Embedding-0.6B";

/// Every file inference reads, relative to the model root, in the layout of `ACE-Step/Ace-Step1.5` with the turbo
/// DiT in [`ACESTEP_DIR`].
pub const REQUIRED_FILES: &[&str] = &[
    "acestep-v15-turbo/config.json",
    "acestep-v15-turbo/model.safetensors",
    "acestep-v15-turbo/silence_latent.pt",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "Qwen3-Embedding-0.6B/config.json",
    "Qwen3-Embedding-0.6B/model.safetensors",
    "Qwen3-Embedding-0.6B/tokenizer.json",
];

/// The files every variant takes from the main repo `ACE-Step/Ace-Step1.5` (VAE, text encoder, tokenizer and the
/// turbo folder's silence latent), as DiffSynth's `AceStepPipeline.from_pretrained` does for every variant.
pub const MAIN_FILES: &[&str] = &[
    "acestep-v15-turbo/silence_latent.pt",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "Qwen3-Embedding-0.6B/config.json",
    "Qwen3-Embedding-0.6B/model.safetensors",
    "Qwen3-Embedding-0.6B/tokenizer.json",
];

/// A DiT folder's config file.
pub const DIT_CONFIG: &str = "config.json";
/// A DiT folder's single-file weights.
pub const DIT_WEIGHTS: &str = "model.safetensors";
/// A DiT folder's shard index (`{"weight_map": {key: shard file}}`), used instead of [`DIT_WEIGHTS`] by the
/// sharded XL checkpoints.
pub const DIT_INDEX: &str = "model.safetensors.index.json";
/// A variant's own silence latent (optional: without one the main repo's is used).
pub const DIT_SILENCE: &str = "silence_latent.pt";

/// Where the two halves of a model live: the main repo's folder (VAE, text encoder, tokenizer, the fallback
/// silence latent) and the variant's DiT folder (config, weights single-file or sharded, maybe a silence latent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDirs {
    /// A folder in the layout of `ACE-Step/Ace-Step1.5`.
    pub main: PathBuf,
    /// The DiT folder: `<main>/acestep-v15-turbo`, a `checkpoints/<variant>` folder or a variant repo's root.
    pub dit: PathBuf,
}

impl ModelDirs {
    /// The main repo's layout with its own turbo DiT.
    pub fn turbo(main: &Path) -> Self {
        Self { main: main.to_path_buf(), dit: main.join(ACESTEP_DIR) }
    }

    /// The silence latent: the DiT folder's own, else the main repo's turbo one.
    pub fn silence_file(&self) -> PathBuf {
        let own = self.dit.join(DIT_SILENCE);
        if own.is_file() {
            own
        } else {
            self.main.join(ACESTEP_DIR).join(DIT_SILENCE)
        }
    }

    /// The DiT folder's weight file: the shard index when there is one, else `model.safetensors`.
    pub fn dit_weights(&self) -> PathBuf {
        let index = self.dit.join(DIT_INDEX);
        if index.is_file() {
            index
        } else {
            self.dit.join(DIT_WEIGHTS)
        }
    }

    /// Every required file that is absent, as a full path (see [`missing_files`] for what counts as absent).
    fn missing(&self) -> Result<Vec<PathBuf>> {
        let mut missing: Vec<PathBuf> =
            missing_files(&self.main, MAIN_FILES)?.iter().map(|f| self.main.join(f)).collect();
        let weights = if self.dit.join(DIT_INDEX).is_file() { DIT_INDEX } else { DIT_WEIGHTS };
        missing.extend(missing_files(&self.dit, &[DIT_CONFIG, weights])?.iter().map(|f| self.dit.join(f)));
        Ok(missing)
    }
}

/// The `files` (paths relative to `root`) absent from `root`. A required path that is there but is not a readable regular file
/// — a folder, a device, a symbolic link loop, a link to nothing, a file without read permission — is an
/// [`EngineError::Io`] that says what it is, not a missing file.
pub(crate) fn missing_files<'a>(root: &Path, files: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut missing = Vec::new();
    for &file in files {
        let path = root.join(file);
        let what = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => continue,
            Ok(meta) if meta.is_dir() => "it is a folder, not a file".to_string(),
            Ok(_) => "it is not a regular file (a device, pipe or socket)".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(&path) {
                Ok(target) => format!("it is a symbolic link to `{}`, which does not exist", target.display()),
                Err(_) => {
                    missing.push(file);
                    continue;
                }
            },
            Err(source) => return Err(EngineError::Io { path, source }),
        };
        let message = format!("{what}; put the model's `{file}` there (re-download the model)");
        return Err(EngineError::Io { path, source: std::io::Error::other(message) });
    }
    Ok(missing)
}

/// Where the weights of a checkpoint come from.
#[derive(Debug, Clone)]
enum Origin {
    /// Model folders on disk.
    Dir(ModelDirs),
    /// Seeded random weights in the configured geometry (no files).
    Random(u64),
}

/// An opened model: configs, compute dtype/device, and lazy access to each weight file.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    origin: Origin,
    /// DiT / condition encoder / audio tokenizer config.
    pub acestep: AceStepConfig,
    /// VAE config.
    pub vae: VaeConfig,
    /// Text encoder config.
    pub qwen3: Qwen3Config,
    /// The variant this checkpoint was opened as, when the caller said (model/variant.rs).
    variant: Option<Variant>,
    /// LoRA adapters merged into the DiT weights as they load (model/lora.rs).
    adapters: Option<Arc<Adapters>>,
    dtype: DType,
    /// The precision of the linear layers' weights when the model runs on the CPU in f32 (model/linear.rs).
    cpu_precision: CpuPrecision,
    device: Device,
}

impl Checkpoint {
    /// Opens a model folder in the main repo's layout with its turbo DiT (see [`Checkpoint::open_dirs`]).
    pub fn open(root: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::open_dirs(&ModelDirs::turbo(root), dtype, device)
    }

    /// Opens a main folder and a DiT folder: checks every required file is present (naming all missing ones) and
    /// parses the configs. No weights are read.
    pub fn open_dirs(dirs: &ModelDirs, dtype: DType, device: &Device) -> Result<Self> {
        let missing = dirs.missing()?;
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(EngineError::MissingFile {
                path: missing[0].clone(),
                hint: format!(
                    "{} of the model's files are missing ({}); download ACE-Step/Ace-Step1.5 \
                     (e.g. `huggingface-cli download ACE-Step/Ace-Step1.5`) and the variant's DiT, or point --model \
                     at a complete folder",
                    missing.len(),
                    names.join(", ")
                ),
            });
        }
        let main = |dir: &str| dirs.main.join(dir).join("config.json");
        let dit_config = dirs.dit.join(DIT_CONFIG);
        let acestep: AceStepConfig = read_json(&dit_config)?;
        acestep.validate(&dit_config)?;
        let vae: VaeConfig = read_json(&main(VAE_DIR))?;
        vae.validate(&main(VAE_DIR))?;
        let qwen3: Qwen3Config = read_json(&main(TEXT_DIR))?;
        qwen3.validate(&main(TEXT_DIR))?;
        Ok(Self::new(Origin::Dir(dirs.clone()), acestep, vae, qwen3, dtype, device))
    }

    /// A checkpoint with the given geometry and seeded random weights (benchmarks, geometry tests).
    pub fn random(
        acestep: AceStepConfig,
        vae: VaeConfig,
        qwen3: Qwen3Config,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self::new(Origin::Random(seed), acestep, vae, qwen3, dtype, device)
    }

    /// A checkpoint of `origin` with these configs, not yet named as a variant and without adapters.
    fn new(
        origin: Origin,
        acestep: AceStepConfig,
        vae: VaeConfig,
        qwen3: Qwen3Config,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            origin,
            acestep,
            vae,
            qwen3,
            variant: None,
            adapters: None,
            dtype,
            cpu_precision: CpuPrecision::F32,
            device: device.clone(),
        }
    }

    /// The real ACE-Step 1.5 turbo geometry (its DiT and VAE, Qwen3-Embedding-0.6B) with seeded random weights.
    pub fn random_turbo(seed: u64, dtype: DType, device: &Device) -> Self {
        Self::random(
            AceStepConfig::turbo(),
            VaeConfig::oobleck_48k(),
            Qwen3Config::embedding_0_6b(),
            seed,
            dtype,
            device,
        )
    }

    /// This checkpoint's geometry, variant, dtype and device with seeded random weights instead of its files.
    pub fn with_random_weights(&self, seed: u64) -> Self {
        let random =
            Self::random(self.acestep.clone(), self.vae.clone(), self.qwen3.clone(), seed, self.dtype, &self.device);
        Self { variant: self.variant, cpu_precision: self.cpu_precision, ..random }
    }

    /// This checkpoint as `variant`: studio mode samples on the variant's schedule kind, and guidance is refused
    /// when the variant or the DiT's config is guidance-distilled (see [`Checkpoint::check_guidance`]).
    pub fn with_variant(self, variant: Variant) -> Self {
        Self { variant: Some(variant), ..self }
    }

    /// This checkpoint with the linear layers' weights in `precision` when it runs on the CPU (f32 unless said;
    /// no effect on a GPU, which runs bf16 throughout).
    pub fn with_cpu_precision(self, precision: CpuPrecision) -> Self {
        Self { cpu_precision: precision, ..self }
    }

    /// The precision of the linear layers' weights: [`Checkpoint::with_cpu_precision`]'s on the CPU in f32, else
    /// that of the compute dtype.
    pub fn matrix_dtype(&self) -> DType {
        if runs_cpu_f32(&self.device, self.dtype) {
            self.cpu_precision.matrix_dtype()
        } else {
            self.dtype
        }
    }

    /// The variant this checkpoint was opened as (`None` when the caller did not say).
    pub fn variant(&self) -> Option<Variant> {
        self.variant
    }

    /// How studio mode lays out the noise levels: the variant's kind, else the turbo table for a turbo config.
    pub fn schedule_kind(&self) -> ScheduleKind {
        match self.variant {
            Some(variant) => variant.defaults().schedule,
            None if self.acestep.is_turbo => ScheduleKind::TurboTable,
            None => ScheduleKind::Formula,
        }
    }

    /// Refuses guidance (`cfg_scale` above 1) on a checkpoint opened as a variant when the variant is a turbo one
    /// or its DiT's config says `is_turbo`: those are guidance-distilled and run at cfg 1. A checkpoint opened
    /// without a variant is not checked (library callers choose for themselves).
    pub fn check_guidance(&self, cfg_scale: f64) -> Result<()> {
        let Some(variant) = self.variant.filter(|_| cfg_scale > 1.0) else { return Ok(()) };
        let distilled = if variant.is_turbo() {
            format!("the {variant} variant is guidance-distilled")
        } else if self.acestep.is_turbo {
            let config = self.dirs().map(|dirs| dirs.dit.join(DIT_CONFIG).display().to_string()).unwrap_or_default();
            format!("the DiT loaded as {variant} is guidance-distilled (`{config}` says is_turbo)")
        } else {
            return Ok(());
        };
        let guided: Vec<&str> = Variant::ALL.into_iter().filter(|v| !v.is_turbo()).map(Variant::name).collect();
        Err(EngineError::invalid(format!(
            "a guidance scale (cfg) of {cfg_scale} needs a guided model, but {distilled} and runs without guidance; \
             set cfg to 1, or load a guided variant ({})",
            guided.join(", ")
        )))
    }

    /// This checkpoint with `loras` merged into its DiT weights whenever they load (in the order given; none
    /// leaves it as it is). The adapters are opened and checked against the DiT's weight header now — an unknown
    /// module, a shape of another model size, mismatched ranks, a non-float tensor or a file without LoRA tensors
    /// is refused naming the first offending key and the file.
    pub fn with_loras(mut self, loras: &[LoraSpec]) -> Result<Self> {
        if loras.is_empty() {
            self.adapters = None;
            return Ok(self);
        }
        if self.dirs().is_none() {
            return Err(EngineError::invalid("LoRA adapters need a model on disk, not random weights"));
        }
        let weights = self.weights(ModelDirs::dit_weights)?;
        self.adapters = Some(Arc::new(Adapters::open(loras, &weights)?));
        Ok(self)
    }

    /// The LoRA adapters merged into the DiT, in merge order.
    pub fn loras(&self) -> &[LoraSpec] {
        self.adapters.as_deref().map_or(&[], Adapters::specs)
    }

    /// The main model folder, if this checkpoint lives on disk.
    pub fn root(&self) -> Option<&Path> {
        self.dirs().map(|dirs| dirs.main.as_path())
    }

    /// The main and DiT folders, if this checkpoint lives on disk.
    pub fn dirs(&self) -> Option<&ModelDirs> {
        match &self.origin {
            Origin::Dir(dirs) => Some(dirs),
            Origin::Random(_) => None,
        }
    }

    /// Compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Compute device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn weights(&self, file: impl FnOnce(&ModelDirs) -> PathBuf) -> Result<Weights> {
        let weights = match &self.origin {
            Origin::Dir(dirs) => Weights::open(&file(dirs), self.dtype, &self.device)?,
            Origin::Random(seed) => Weights::random(*seed, self.dtype, &self.device),
        };
        Ok(weights.with_matrix_dtype(self.matrix_dtype()))
    }

    /// The DiT folder's `model.safetensors` or its shards (keys `decoder.*`, `encoder.*`, `tokenizer.*`,
    /// `detokenizer.*`, `null_condition_emb`).
    /// The LoRA adapters, if any, are merged into the `decoder.*` weights they change.
    pub fn acestep_weights(&self) -> Result<Weights> {
        let weights = self.weights(ModelDirs::dit_weights)?;
        Ok(match &self.adapters {
            Some(adapters) => weights.with_adapters(adapters.clone()),
            None => weights,
        })
    }

    /// `vae/diffusion_pytorch_model.safetensors`.
    pub fn vae_weights(&self) -> Result<Weights> {
        self.weights(|dirs| dirs.main.join("vae/diffusion_pytorch_model.safetensors"))
    }

    /// `Qwen3-Embedding-0.6B/model.safetensors` (bare Qwen3Model keys).
    pub fn text_weights(&self) -> Result<Weights> {
        self.weights(|dirs| dirs.main.join("Qwen3-Embedding-0.6B/model.safetensors"))
    }

    /// The silence latent's file: the DiT folder's own, else the main repo's (`None` for random checkpoints).
    pub fn silence_file(&self) -> Option<PathBuf> {
        self.dirs().map(ModelDirs::silence_file)
    }

    /// Path of a file in the main model folder (`None` for random checkpoints).
    pub fn file(&self, relative: &str) -> Option<PathBuf> {
        self.root().map(|r| r.join(relative))
    }
}

/// The tiny fixture model the unit tests run on (`tests/fixtures/tiny-acestep`).
#[cfg(test)]
pub(crate) fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
}

/// The fixture model opened on the CPU in `dtype`.
#[cfg(test)]
pub(crate) fn fixture(dtype: DType) -> Checkpoint {
    Checkpoint::open(&fixture_root(), dtype, &Device::Cpu).expect("the fixture model opens")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_fixture_model_and_counts_tensors() {
        let ckpt = Checkpoint::open(&fixture_root(), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(ckpt.acestep.hidden_size, 64);
        assert_eq!(ckpt.vae.hop(), 1920);
        assert_eq!(ckpt.acestep_weights().unwrap().tensor_count(), Some(209));
        assert_eq!(ckpt.vae_weights().unwrap().tensor_count(), Some(365));
        assert_eq!(ckpt.text_weights().unwrap().tensor_count(), Some(24));
    }

    #[test]
    fn missing_files_are_all_named() {
        let dir = std::env::temp_dir().join(format!("retake-missing-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(VAE_DIR)).unwrap();
        std::fs::copy(fixture_root().join("vae/config.json"), dir.join("vae/config.json")).unwrap();
        let err = Checkpoint::open(&dir, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("7 of the model's files are missing"), "{err}");
        assert!(err.contains("acestep-v15-turbo/model.safetensors") && err.contains("tokenizer.json"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A model folder whose required files are all empty files, but `odd`, which `make` puts in place.
    fn folder_with(odd: &str, make: impl FnOnce(&Path)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in REQUIRED_FILES {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if *f != odd {
                std::fs::write(path, "").unwrap();
            }
        }
        make(&dir.path().join(odd));
        dir
    }

    #[test]
    fn a_required_file_that_is_a_folder_is_named_as_one_not_as_missing() {
        let dir = folder_with("vae/diffusion_pytorch_model.safetensors", |p| std::fs::create_dir(p).unwrap());
        let err = Checkpoint::open(dir.path(), DType::F32, &Device::Cpu).unwrap_err();
        assert!(matches!(err, EngineError::Io { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("diffusion_pytorch_model.safetensors`: it is a folder, not a file"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_or_a_link_to_nothing_is_named_as_such() {
        let looped = folder_with("vae/config.json", |p| {
            std::os::unix::fs::symlink(p.with_file_name("b.json"), p).unwrap();
            std::os::unix::fs::symlink(p, p.with_file_name("b.json")).unwrap();
        });
        let err = Checkpoint::open(looped.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("vae/config.json`: Too many levels of symbolic links"), "{err}");
        let dangling = folder_with("vae/config.json", |p| std::os::unix::fs::symlink("../../blobs/gone", p).unwrap());
        let err = Checkpoint::open(dangling.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("it is a symbolic link to `../../blobs/gone`, which does not exist"), "{err}");
    }

    #[test]
    fn unreadable_config_is_a_config_error() {
        let dir = std::env::temp_dir().join(format!("retake-badcfg-{}", std::process::id()));
        for f in REQUIRED_FILES {
            let dst = dir.join(f);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(fixture_root().join(f), &dst).unwrap();
        }
        std::fs::write(dir.join("vae/config.json"), "{\"audio_channels\": 2").unwrap();
        let err = Checkpoint::open(&dir, DType::F32, &Device::Cpu).unwrap_err();
        assert!(matches!(err, EngineError::Config { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
