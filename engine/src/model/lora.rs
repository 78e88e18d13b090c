//! LoRA adapters merged into the DiT weights when they load, as DiffSynth 2.1.12 does
//! (`diffsynth/utils/lora/general.py` `GeneralLoRALoader.convert_state_dict` and `fuse_lora_to_base_model`;
//! tests/fixtures-variants/README.md, kind `lora`): for every adapted Linear `W += scale · (up @ down)` in f32, before
//! the weight is converted to the compute dtype or packed for a kernel.
//!
//! Two key layouts are read. DiffSynth's training output (peft): `<module>.lora_A[.default].weight` `[rank, in]`
//! and `<module>.lora_B[.default].weight` `[out, rank]`, no alpha. Kohya-style: `diffusion_model.<module>.lora_down
//! .weight`, `….lora_up.weight` and an optional 0-dim `….alpha`, which first scales `lora_down` by `alpha / rank`.
//! `<module>` is a DiT module name (the checkpoint key without `decoder.`); the adapted modules are the q/k/v/o
//! projections of `self_attn` and `cross_attn` and the `mlp` gate/up/down projections of each layer.
//!
//! Everything is checked when the adapters open, from the file headers and the checkpoint's header, before any job
//! runs: the first offending key and its file are named. The factors stay memory-mapped and are read when a weight
//! they adapt loads (a streamed DiT block merges them each time it streams in).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::weights::Weights;
use crate::error::{EngineError, Result};

/// The prefix kohya-style files put before the module name.
const KOHYA_PREFIX: &str = "diffusion_model.";
/// The checkpoint prefix of the DiT's keys.
const DIT_PREFIX: &str = "decoder.";
/// Attention blocks whose projections may be adapted, and their projections.
const ATTENTION: [&str; 2] = ["self_attn", "cross_attn"];
const ATTENTION_PROJECTIONS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
/// The MLP's projections that may be adapted.
const MLP_PROJECTIONS: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

/// One adapter to merge: a safetensors file and the factor its product is scaled by (DiffSynth's `alpha`
/// argument of `load_lora`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// The adapter file.
    pub path: PathBuf,
    /// Multiplier of the adapter's update (1 = as trained, 0 = off).
    pub scale: f64,
}

impl FromStr for LoraSpec {
    type Err = String;

    /// `FILE` (scale 1) or `FILE:SCALE`. A last `:` followed by something that is not a number belongs to the
    /// path (`C:\loras\a.safetensors`).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (path, scale) = match text.rsplit_once(':').map(|(path, scale)| (path, scale.trim().parse::<f64>())) {
            Some((path, Ok(scale))) => (path, scale),
            _ => (text, 1.0),
        };
        if path.is_empty() {
            return Err(format!("`{text}` names no file; give FILE or FILE:SCALE"));
        }
        if !scale.is_finite() {
            return Err(format!(
                "the LoRA scale in `{text}` is not a finite number; give FILE:SCALE, e.g. a.safetensors:0.8"
            ));
        }
        Ok(Self { path: PathBuf::from(path), scale })
    }
}

/// One adapter's factors for one module.
struct Factors {
    /// Index of the file in [`Adapters::files`].
    file: usize,
    /// Keys of the down (`lora_A`/`lora_down`) and up (`lora_B`/`lora_up`) factors.
    down: String,
    up: String,
    /// The spec's scale of the product `up @ down`.
    scale: f64,
    /// `alpha / rank` when the file has an alpha for this module; it scales `down` before the product
    /// (DiffSynth's order).
    down_factor: Option<f32>,
}

/// Opened, checked adapters, keyed by the checkpoint key of each weight they change.
pub struct Adapters {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    specs: Vec<LoraSpec>,
    updates: BTreeMap<String, Vec<Factors>>,
}

impl fmt::Debug for Adapters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapters").field("specs", &self.specs).field("weights", &self.updates.len()).finish()
    }
}

/// A tensor of an adapter file: its key and stored shape.
type Found = (String, Vec<usize>);

/// The role of a tensor in an adapter file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Down,
    Up,
    Alpha,
}

/// `key` → (DiT module, role), after DiffSynth's renaming: a leading `diffusion_model.` dropped, `.default`
/// dropped, `lora_up`/`lora_down` or `lora_B`/`lora_A`. `None` for anything else.
fn classify(key: &str) -> Option<(&str, Part)> {
    let name = key.strip_prefix(KOHYA_PREFIX).unwrap_or(key);
    if let Some(module) = name.strip_suffix(".alpha") {
        return Some((module, Part::Alpha));
    }
    let rest = name.strip_suffix(".default.weight").or_else(|| name.strip_suffix(".weight"))?;
    [(".lora_A", Part::Down), (".lora_B", Part::Up), (".lora_down", Part::Down), (".lora_up", Part::Up)]
        .into_iter()
        .find_map(|(marker, part)| rest.strip_suffix(marker).map(|module| (module, part)))
        .filter(|(module, _)| !module.is_empty())
}

/// Whether `module` is one of the Linears adapters may change: `layers.<i>.{self,cross}_attn.{q,k,v,o}_proj` or
/// `layers.<i>.mlp.{gate,up,down}_proj`.
fn is_target(module: &str) -> bool {
    let parts: Vec<&str> = module.split('.').collect();
    match parts.as_slice() {
        ["layers", index, block, projection] if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            (ATTENTION.contains(block) && ATTENTION_PROJECTIONS.contains(projection))
                || (*block == "mlp" && MLP_PROJECTIONS.contains(projection))
        }
        _ => false,
    }
}

/// A refusal naming the adapter file, the offending key and what to do.
fn refuse(path: &Path, key: &str, what: impl fmt::Display) -> EngineError {
    EngineError::invalid(format!(
        "LoRA `{}`: tensor `{key}` {what}; use a LoRA trained for this model (DiffSynth `lora_A`/`lora_B` or \
         kohya `lora_down`/`lora_up` keys on the DiT's attention and MLP projections)",
        path.display()
    ))
}

impl Adapters {
    /// Opens and checks every adapter against the DiT weights of `checkpoint` (the checkpoint's top-level view):
    /// each key must be a LoRA factor or alpha of an adaptable module the DiT has, in a float dtype, with both
    /// factors present, matching ranks and the module's `[out, in]`; a file must hold at least one module.
    pub fn open(specs: &[LoraSpec], checkpoint: &Weights) -> Result<Self> {
        let mut adapters = Self { files: Vec::new(), specs: specs.to_vec(), updates: BTreeMap::new() };
        for spec in specs {
            adapters.add(spec, checkpoint)?;
        }
        Ok(adapters)
    }

    fn add(&mut self, spec: &LoraSpec, checkpoint: &Weights) -> Result<()> {
        let path = &spec.path;
        if !spec.scale.is_finite() {
            return Err(EngineError::invalid(format!(
                "LoRA `{}`: scale {} is not a finite number",
                path.display(),
                spec.scale
            )));
        }
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path: path.clone(),
                hint: "the LoRA file is not there; check the path given with --lora".into(),
            });
        }
        // SAFETY: read-only map; like every mmap reader we rely on nobody truncating the file while it is open.
        let tensors = unsafe { MmapedSafetensors::new(path) }.map_err(|e| EngineError::CorruptWeights {
            path: path.clone(),
            message: format!("not a LoRA safetensors file: {e}"),
        })?;
        // Per module, its down, up and alpha tensors (key and stored shape), as `Part` indexes them.
        let mut modules: BTreeMap<&str, [Option<Found>; 3]> = BTreeMap::new();
        let mut listed = tensors.tensors();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, view) in &listed {
            let (module, part) = classify(key).ok_or_else(|| {
                refuse(path, key, "is not a LoRA factor (`<module>.lora_A[.default].weight`, `<module>.lora_B…`, `diffusion_model.<module>.lora_down.weight`, `….lora_up.weight` or `….alpha`)")
            })?;
            if !is_target(module) {
                return Err(refuse(
                    path,
                    key,
                    format!("adapts `{module}`, which is not an attention or MLP projection of the DiT"),
                ));
            }
            let dtype = view.dtype();
            if !matches!(
                dtype,
                safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16 | safetensors::Dtype::F64
            ) {
                return Err(refuse(path, key, format!("is {dtype:?}, not a float tensor")));
            }
            let slot = &mut modules.entry(module).or_default()[part as usize];
            if slot.is_some() {
                return Err(refuse(path, key, format!("repeats the {part:?} factor of `{module}` under another name")));
            }
            *slot = Some((key.clone(), view.shape().to_vec()));
        }
        if modules.is_empty() {
            return Err(EngineError::invalid(format!(
                "LoRA `{}` holds no tensors; give a LoRA safetensors file (DiffSynth or kohya keys)",
                path.display()
            )));
        }
        let file = self.files.len();
        for (module, [down, up, alpha]) in modules {
            let weight_key = format!("{DIT_PREFIX}{module}.weight");
            let present = down.as_ref().or(up.as_ref()).or(alpha.as_ref()).map(|(k, _)| k.clone()).expect("a part");
            let (Some((down, down_shape)), Some((up, up_shape))) = (down, up) else {
                return Err(refuse(
                    path,
                    &present,
                    format!("has no partner: `{module}` needs both a down (lora_A) and an up (lora_B) factor"),
                ));
            };
            let base = checkpoint.stored_shape(&weight_key).ok_or_else(|| {
                refuse(
                    path,
                    &down,
                    format!("adapts `{module}`, which this checkpoint's DiT does not have (another model's LoRA?)"),
                )
            })?;
            let [out_dim, in_dim] = base[..] else {
                return Err(refuse(path, &down, format!("adapts `{weight_key}` of shape {base:?}, not a Linear")));
            };
            let [rank, down_in] = down_shape[..] else {
                return Err(refuse(path, &down, format!("has shape {down_shape:?}; a down factor is [rank, in]")));
            };
            let [up_out, up_rank] = up_shape[..] else {
                return Err(refuse(path, &up, format!("has shape {up_shape:?}; an up factor is [out, rank]")));
            };
            if rank == 0 || up_rank != rank {
                return Err(refuse(
                    path,
                    &up,
                    format!("has rank {up_rank} but its down factor `{down}` has rank {rank}"),
                ));
            }
            if down_in != in_dim || up_out != out_dim {
                return Err(refuse(
                    path,
                    &down,
                    format!(
                        "and `{up}` make a [{up_out}, {down_in}] update but `{weight_key}` is [{out_dim}, {in_dim}] \
                         (a LoRA for another model size)"
                    ),
                ));
            }
            let down_factor = match alpha {
                None => None,
                Some((key, shape)) => {
                    if shape.iter().product::<usize>() != 1 {
                        return Err(refuse(path, &key, format!("has shape {shape:?}; an alpha is one number")));
                    }
                    let value = tensors
                        .load(&key, &Device::Cpu)
                        .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                        .map_err(|e| EngineError::CorruptWeights {
                            path: path.clone(),
                            message: format!("{key}: {e}"),
                        })?[0];
                    if !value.is_finite() {
                        return Err(refuse(path, &key, format!("is {value}, not a finite number")));
                    }
                    Some(value / rank as f32)
                }
            };
            self.updates.entry(weight_key).or_default().push(Factors {
                file,
                down,
                up,
                scale: spec.scale,
                down_factor,
            });
        }
        self.files.push((path.clone(), tensors));
        Ok(())
    }

    /// The adapters, in the order they merge.
    pub fn specs(&self) -> &[LoraSpec] {
        &self.specs
    }

    /// Number of checkpoint weights the adapters change.
    pub fn adapted_weights(&self) -> usize {
        self.updates.len()
    }

    /// `weight` (the stored tensor of checkpoint key `key`, on its device) with every adapter of `key` merged,
    /// in f32; `None` when no adapter changes `key`.
    pub fn merge(&self, key: &str, weight: &Tensor) -> Result<Option<Tensor>> {
        let Some(updates) = self.updates.get(key) else { return Ok(None) };
        let device = weight.device();
        let mut merged = weight.to_dtype(DType::F32)?;
        for factors in updates {
            let (path, tensors) = &self.files[factors.file];
            let load = |name: &str| {
                tensors
                    .load(name, device)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .map_err(|e| EngineError::CorruptWeights { path: path.clone(), message: format!("{name}: {e}") })
            };
            let mut down = load(&factors.down)?;
            if let Some(factor) = factors.down_factor {
                down = (down * factor as f64)?;
            }
            let update = (load(&factors.up)?.matmul(&down)? * factors.scale)?;
            merged = (merged + update)?;
        }
        Ok(Some(merged))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::checkpoint::{fixture, fixture_root, Checkpoint, ModelDirs};
    use crate::test_util::max_diff;

    fn variants() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures-variants")
    }

    fn xl() -> Checkpoint {
        let dirs = ModelDirs { main: fixture_root(), dit: variants().join("tiny-acestep/acestep-v15-xl-base") };
        Checkpoint::open_dirs(&dirs, DType::F32, &Device::Cpu).unwrap()
    }

    fn xl_lora(scale: f64) -> LoraSpec {
        LoraSpec { path: variants().join("loras/acestep-v15-xl-base-lora-r4.safetensors"), scale }
    }

    const Q: &str = "decoder.layers.0.self_attn.q_proj.weight";

    fn q_proj(ckpt: &Checkpoint) -> Tensor {
        ckpt.acestep_weights().unwrap().get(&[128, 96], Q).unwrap()
    }

    #[test]
    fn file_and_scale_parse_with_the_scale_optional() {
        let parse = |text: &str| text.parse::<LoraSpec>();
        assert_eq!(parse("a.safetensors").unwrap(), LoraSpec { path: "a.safetensors".into(), scale: 1.0 });
        assert_eq!(parse("dir/a.safetensors:0.8").unwrap(), LoraSpec { path: "dir/a.safetensors".into(), scale: 0.8 });
        assert_eq!(parse("a.safetensors:-1").unwrap().scale, -1.0);
        assert_eq!(parse(r"C:\loras\a.safetensors").unwrap().path, PathBuf::from(r"C:\loras\a.safetensors"));
        assert!(parse("a.safetensors:inf").unwrap_err().contains("not a finite number"));
        assert!(parse(":0.5").unwrap_err().contains("names no file"));
    }

    #[test]
    fn both_key_layouts_are_recognised_and_other_keys_are_not() {
        assert_eq!(classify("layers.3.mlp.up_proj.lora_A.default.weight"), Some(("layers.3.mlp.up_proj", Part::Down)));
        assert_eq!(classify("layers.3.mlp.up_proj.lora_B.weight"), Some(("layers.3.mlp.up_proj", Part::Up)));
        let kohya = "diffusion_model.layers.0.self_attn.o_proj";
        assert_eq!(classify(&format!("{kohya}.lora_down.weight")), Some(("layers.0.self_attn.o_proj", Part::Down)));
        assert_eq!(classify(&format!("{kohya}.lora_up.weight")), Some(("layers.0.self_attn.o_proj", Part::Up)));
        assert_eq!(classify(&format!("{kohya}.alpha")), Some(("layers.0.self_attn.o_proj", Part::Alpha)));
        assert_eq!(classify("layers.0.self_attn.q_proj.weight"), None);
        assert_eq!(classify("lora_A.weight"), None);
        assert!(is_target("layers.12.cross_attn.v_proj") && is_target("layers.0.mlp.gate_proj"));
        assert!(
            !is_target("layers.0.self_attn.q_norm") && !is_target("proj_in.1") && !is_target("layers.x.mlp.up_proj")
        );
    }

    #[test]
    fn adapters_change_the_dit_projections_only_and_scale_zero_changes_nothing() {
        let base = xl();
        let adapted = xl().with_loras(&[xl_lora(0.8)]).unwrap();
        assert_eq!(adapted.loras(), &[xl_lora(0.8)]);
        let weights = adapted.acestep_weights().unwrap();
        let adapters = Adapters::open(&[xl_lora(0.8)], &base.acestep_weights().unwrap()).unwrap();
        assert_eq!(adapters.adapted_weights(), 66, "6 layers x 11 projections");
        assert!(max_diff(&q_proj(&base), &q_proj(&adapted)) > 1e-4, "the LoRA changes q_proj");
        let norm = "decoder.layers.0.self_attn.q_norm.weight";
        let norms = [&base, &adapted].map(|c| c.acestep_weights().unwrap().get(&[16], norm).unwrap());
        assert_eq!(max_diff(&norms[0], &norms[1]), 0.0, "weights without an adapter load as stored");
        let off = xl().with_loras(&[xl_lora(0.0)]).unwrap();
        assert_eq!(max_diff(&q_proj(&base), &q_proj(&off)), 0.0);
        // Two adapters add up: 0.8 and 0.2 of the same file equal it at 1.0.
        let split = xl().with_loras(&[xl_lora(0.8), xl_lora(0.2)]).unwrap();
        let whole = xl().with_loras(&[xl_lora(1.0)]).unwrap();
        assert!(max_diff(&q_proj(&split), &q_proj(&whole)) < 1e-6);
        // Byte accounting reads the stored shapes: the same with or without adapters.
        assert_eq!(weights.bytes_under("decoder"), base.acestep_weights().unwrap().bytes_under("decoder"));
    }

    /// A LoRA file holding `tensors`, in a temp folder kept alive by the returned guard.
    fn lora_file(tensors: &[(&str, Tensor)]) -> (tempfile::TempDir, LoraSpec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let map: HashMap<String, Tensor> = tensors.iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        (dir, LoraSpec { path, scale: 1.0 })
    }

    fn zeros(shape: &[usize]) -> Tensor {
        Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
    }

    /// The refusal of `tensors` as a LoRA for the turbo fixture (q_proj [64, 64], mlp.down_proj [64, 176]).
    fn refusal(tensors: &[(&str, Tensor)]) -> String {
        let (_dir, spec) = lora_file(tensors);
        let err = fixture(DType::F32).with_loras(&[spec]).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("bad.safetensors"), "the file is named: {message}");
        message
    }

    #[test]
    fn a_lora_for_another_model_size_is_refused_naming_the_first_key() {
        let err = fixture(DType::F32).with_loras(&[xl_lora(1.0)]).unwrap_err().to_string();
        assert!(err.contains("acestep-v15-xl-base-lora-r4.safetensors"), "{err}");
        assert!(err.contains("tensor `layers.0.cross_attn.k_proj.lora_A.default.weight`"), "{err}");
        assert!(
            err.contains("make a [32, 96] update but `decoder.layers.0.cross_attn.k_proj.weight` is [32, 64]"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_offending_key() {
        let q = "layers.0.self_attn.q_proj";
        let (a, b) = (format!("{q}.lora_A.weight"), format!("{q}.lora_B.weight"));
        let err = refusal(&[(&a, zeros(&[4, 64])), (&b, zeros(&[64, 3]))]);
        assert!(err.contains(&format!("tensor `{b}` has rank 3 but its down factor `{a}` has rank 4")), "{err}");
        let err = refusal(&[(&a, zeros(&[4, 64]))]);
        assert!(err.contains(&format!("tensor `{a}` has no partner")), "{err}");
        let err = refusal(&[("layers.0.self_attn.q_norm.lora_A.weight", zeros(&[4, 16]))]);
        assert!(
            err.contains("adapts `layers.0.self_attn.q_norm`, which is not an attention or MLP projection"),
            "{err}"
        );
        let err = refusal(&[
            ("layers.9.mlp.up_proj.lora_A.weight", zeros(&[4, 64])),
            ("layers.9.mlp.up_proj.lora_B.weight", zeros(&[176, 4])),
        ]);
        assert!(err.contains("adapts `layers.9.mlp.up_proj`, which this checkpoint's DiT does not have"), "{err}");
        let ints = Tensor::zeros((4, 64), DType::I64, &Device::Cpu).unwrap();
        let err = refusal(&[(&a, ints), (&b, zeros(&[64, 4]))]);
        assert!(err.contains(&format!("tensor `{a}` is I64, not a float tensor")), "{err}");
        let err = refusal(&[("decoder.layers.0.self_attn.q_proj.weight", zeros(&[64, 64]))]);
        assert!(err.contains("tensor `decoder.layers.0.self_attn.q_proj.weight` is not a LoRA factor"), "{err}");
        let err = refusal(&[(&a, zeros(&[4, 64])), (&b, zeros(&[64, 4])), (&format!("{q}.alpha"), zeros(&[2]))]);
        assert!(err.contains("has shape [2]; an alpha is one number"), "{err}");
        assert!(refusal(&[]).contains("holds no tensors"));
        let missing = LoraSpec { path: "/nonexistent/style.safetensors".into(), scale: 1.0 };
        let err = fixture(DType::F32).with_loras(&[missing]).unwrap_err();
        assert!(matches!(err, EngineError::MissingFile { .. }) && err.to_string().contains("--lora"), "{err}");
    }
}
