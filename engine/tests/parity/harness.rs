//! Fixture loading and tensor comparison for the parity runner; knows nothing about particular cases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use retake_engine::model::checkpoint::{Checkpoint, ModelDirs};
use retake_engine::model::linear::CpuPrecision;
use retake_engine::runtime::DeviceChoice;
use serde_json::Value;

/// Where and in what precision the port runs. The default (CPU, f32) is checked against the manifest's
/// tolerances; any other target (`RETAKE_PARITY_DEVICE=cuda:0`, `RETAKE_PARITY_DTYPE=bf16`, or bf16 weights on the
/// CPU: `RETAKE_CPU_PRECISION=bf16`) is checked for direction instead: cosine ≥ 0.999 for float tensors, ≥ 99 %
/// agreement for integer ones.
#[derive(Clone)]
pub struct Target {
    pub device: Device,
    pub dtype: DType,
    /// The linear layers' weights on the CPU in f32 (model/linear.rs).
    pub cpu_precision: CpuPrecision,
}

/// Minimum cosine similarity of a float tensor on a non-default target.
const MIN_COSINE: f64 = 0.999;
/// Minimum share of equal elements of an integer tensor on a non-default target.
const MIN_AGREEMENT: f64 = 0.99;

impl Target {
    /// The targets the environment names; with none named, the reference and the CPU in bf16 precision.
    fn all_from_env() -> Vec<Self> {
        let named = ["RETAKE_PARITY_DEVICE", "RETAKE_PARITY_DTYPE", CpuPrecision::ENV];
        if named.iter().any(|name| std::env::var_os(name).is_some()) {
            return vec![Self::from_env()];
        }
        let reference = Self { device: Device::Cpu, dtype: DType::F32, cpu_precision: CpuPrecision::F32 };
        vec![reference.clone(), Self { cpu_precision: CpuPrecision::Bf16, ..reference }]
    }

    fn from_env() -> Self {
        let spec = std::env::var("RETAKE_PARITY_DEVICE").unwrap_or_else(|_| "cpu".into());
        let choice: DeviceChoice = spec.parse().unwrap_or_else(|e| panic!("RETAKE_PARITY_DEVICE: {e}"));
        let device = choice.open().unwrap_or_else(|e| panic!("cannot open {spec}: {e}"));
        let dtype = match std::env::var("RETAKE_PARITY_DTYPE").as_deref() {
            Ok("bf16") => DType::BF16,
            Ok("f16") => DType::F16,
            Ok("f32") | Err(_) => DType::F32,
            Ok(other) => panic!("RETAKE_PARITY_DTYPE={other}: use f32, bf16 or f16"),
        };
        let cpu_precision = std::env::var(CpuPrecision::ENV)
            .map_or(Ok(CpuPrecision::F32), |v| v.parse())
            .unwrap_or_else(|e| panic!("{}: {e}", CpuPrecision::ENV));
        Self { device, dtype, cpu_precision }
    }

    /// True for the CPU/f32 run that the manifest's tolerances describe.
    pub fn is_reference(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32 && self.cpu_precision == CpuPrecision::F32
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        let weights = if self.device.is_cpu() && self.dtype == DType::F32 { self.cpu_precision.name() } else { "" };
        format!("{:?} {:?} {weights}", self.device.location(), self.dtype).trim_end().to_string()
    }
}

/// A fixture set: its folder, parsed manifest and the target to run on.
pub struct Fixtures {
    pub dir: PathBuf,
    pub target: Target,
    manifest: Value,
}

impl Fixtures {
    /// The set named by `RETAKE_FIXTURES` (relative paths are tried from the current and the workspace folder), else
    /// the workspace's `tests/fixtures` and `tests/fixtures-variants`; each on every target of
    /// [`Target::all_from_env`].
    pub fn from_env() -> Vec<Self> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dirs = match std::env::var_os("RETAKE_FIXTURES") {
            Some(d) => {
                let d = PathBuf::from(d);
                vec![if d.is_absolute() || d.exists() { d } else { workspace.join(d) }]
            }
            None => vec![workspace.join("tests/fixtures"), workspace.join("tests/fixtures-variants")],
        };
        let targets = Target::all_from_env();
        targets.iter().flat_map(|target| dirs.iter().map(|dir| Self::open(dir.clone(), target.clone()))).collect()
    }

    fn open(dir: PathBuf, target: Target) -> Self {
        let text = std::fs::read_to_string(dir.join("manifest.json"))
            .unwrap_or_else(|e| panic!("cannot read {}/manifest.json: {e}", dir.display()));
        let manifest = serde_json::from_str(&text).expect("manifest.json is not JSON");
        Self { dir, target, manifest }
    }

    /// Every case in manifest order. A variant set (`main_models_root` in the manifest) takes the VAE, text
    /// encoder and silence latent from the main set's folder and the DiT from `<models_root>/<case.checkpoint>`;
    /// a main set holds both in `models_root`.
    pub fn cases(&self) -> Vec<Case> {
        let root = self.dir.join(self.manifest["models_root"].as_str().unwrap_or("tiny-acestep"));
        let main = self.manifest["main_models_root"].as_str().map_or_else(|| root.clone(), |m| self.dir.join(m));
        self.manifest["cases"]
            .as_array()
            .expect("manifest has no cases")
            .iter()
            .map(|c| Case {
                name: c["name"].as_str().expect("case without name").to_string(),
                kind: c["kind"].as_str().expect("case without kind").to_string(),
                file: self.dir.join(c["file"].as_str().expect("case without file")),
                model: match c["checkpoint"].as_str() {
                    Some(dit) => ModelDirs { main: main.clone(), dit: root.join(dit) },
                    None => ModelDirs::turbo(&main),
                },
                fixtures: self.dir.clone(),
                json: c.clone(),
                target: self.target.clone(),
            })
            .collect()
    }
}

/// One manifest case.
pub struct Case {
    pub name: String,
    pub kind: String,
    pub file: PathBuf,
    /// The model folders the case runs on.
    pub model: ModelDirs,
    /// The fixture set's folder (LoRA files are named relative to it).
    pub fixtures: PathBuf,
    pub json: Value,
    pub target: Target,
}

/// Tensors produced by the port for a case, keyed by the manifest names (`out.x`, `mid.y`).
pub type Produced = HashMap<String, Tensor>;

/// What a kind handler returns: `None` means the kind is not implemented yet (SKIP).
pub type Handler = fn(&Inputs) -> Result<Option<Produced>, String>;

/// What a kind handler gets: the case, its `in.*` tensors and the fixture model.
pub struct Inputs<'a> {
    pub case: &'a Case,
    tensors: HashMap<String, Tensor>,
}

impl Inputs<'_> {
    /// The `in.<name>` tensor on the target device: float tensors in the target dtype, integers as stored.
    pub fn tensor(&self, name: &str) -> Result<Tensor, String> {
        let t = self.tensors.get(name).ok_or_else(|| format!("case has no tensor `{name}`"))?;
        let t = if t.dtype().is_float() { t.to_dtype(self.case.target.dtype) } else { Ok(t.clone()) };
        t.and_then(|t| t.to_device(&self.case.target.device)).map_err(|e| e.to_string())
    }

    /// The `in.<name>` tensor exactly as stored (CPU, f32/i64), for scalars the port takes as plain numbers.
    pub fn stored(&self, name: &str) -> Result<&Tensor, String> {
        self.tensors.get(name).ok_or_else(|| format!("case has no tensor `{name}`"))
    }

    /// `args.<key>` of the case.
    pub fn arg(&self, key: &str) -> &Value {
        &self.case.json["args"][key]
    }

    /// `strings.<key>` of the case.
    pub fn string(&self, key: &str) -> Result<&str, String> {
        self.case.json["strings"][key].as_str().ok_or_else(|| format!("case has no string `{key}`"))
    }

    /// Names of the reference tensors (`out.*`, `mid.*`) the manifest lists for this case.
    pub fn expected_names(&self) -> Vec<String> {
        self.case.json["tensors"]
            .as_object()
            .map(|m| m.keys().filter(|k| !k.starts_with("in.")).cloned().collect())
            .unwrap_or_default()
    }

    /// The fixture model opened on the target (f32 on the CPU by default).
    pub fn checkpoint(&self) -> Result<Checkpoint, String> {
        let Target { device, dtype, cpu_precision } = &self.case.target;
        let checkpoint = Checkpoint::open_dirs(&self.case.model, *dtype, device).map_err(|e| e.to_string())?;
        Ok(checkpoint.with_cpu_precision(*cpu_precision))
    }
}

/// Outcome of one case.
pub enum Verdict {
    Pass { max_abs: f64, worst_ratio: f64 },
    Fail { max_abs: f64, worst_ratio: f64, why: String },
    Skip { why: String },
}

impl Verdict {
    /// The one-line report.
    pub fn line(&self, case: &Case) -> String {
        match self {
            Verdict::Pass { max_abs, worst_ratio } => {
                format!("PARITY {} {} max_abs={max_abs:.3e} worst_ratio={worst_ratio:.3} PASS", case.name, case.kind)
            }
            Verdict::Fail { max_abs, worst_ratio, why } => format!(
                "PARITY {} {} max_abs={max_abs:.3e} worst_ratio={worst_ratio:.3} FAIL ({why})",
                case.name, case.kind
            ),
            Verdict::Skip { why } => format!("PARITY {} {} max_abs=- worst_ratio=- SKIP ({why})", case.name, case.kind),
        }
    }
}

/// Tolerance of one reference tensor.
enum Tolerance {
    Exact,
    Close {
        atol: f64,
        rtol: f64,
    },
    /// Non-default targets: float tensors by direction, integer tensors by agreement.
    Direction,
}

impl Tolerance {
    fn of(spec: &Value, target: &Target) -> Self {
        if !target.is_reference() {
            Tolerance::Direction
        } else if spec["exact"].as_bool() == Some(true) {
            Tolerance::Exact
        } else {
            Tolerance::Close {
                atol: spec["atol"].as_f64().expect("tolerance without atol"),
                rtol: spec["rtol"].as_f64().unwrap_or(0.0),
            }
        }
    }
}

impl Case {
    /// Runs the case through `handler` and compares every produced tensor with the reference.
    pub fn run(&self, handler: Handler) -> Verdict {
        let tensors = match candle_core::safetensors::load(&self.file, &Device::Cpu) {
            Ok(t) => t,
            Err(e) => {
                return Verdict::Fail {
                    max_abs: f64::NAN,
                    worst_ratio: f64::NAN,
                    why: format!("cannot load case: {e}"),
                }
            }
        };
        let inputs = Inputs { case: self, tensors };
        let produced = match handler(&inputs) {
            Ok(Some(p)) => p,
            Ok(None) => return Verdict::Skip { why: format!("kind `{}` not implemented", self.kind) },
            Err(e) => return Verdict::Fail { max_abs: f64::NAN, worst_ratio: f64::NAN, why: e },
        };
        let (mut max_abs, mut worst_ratio, mut problems) = (0f64, 0f64, Vec::new());
        for name in inputs.expected_names() {
            let reference = &inputs.tensors[&name];
            let Some(port) = produced.get(&name) else {
                if name.starts_with("out.") {
                    problems.push(format!("{name} not produced"));
                }
                continue;
            };
            let tol = Tolerance::of(&self.json["tensors"][&name]["tolerance"], &self.target);
            match compare(port, reference, &tol) {
                Ok((abs, ratio)) => {
                    max_abs = max_abs.max(abs);
                    worst_ratio = worst_ratio.max(ratio);
                    if ratio > 1.0 {
                        problems.push(format!("{name} max_abs={abs:.3e} ratio={ratio:.3}"));
                    }
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        if problems.is_empty() {
            Verdict::Pass { max_abs, worst_ratio }
        } else {
            Verdict::Fail { max_abs, worst_ratio, why: problems.join("; ") }
        }
    }
}

/// `(max |port − ref|, max |port − ref| / (atol + rtol·|ref|))`; exact tensors give ratio 0 or ∞; direction
/// checks give `(1 − cosine) / (1 − MIN_COSINE)` (floats) or `(1 − agreement) / (1 − MIN_AGREEMENT)` (integers).
fn compare(port: &Tensor, reference: &Tensor, tol: &Tolerance) -> Result<(f64, f64), String> {
    if port.dims() != reference.dims() {
        return Err(format!("shape {:?}, reference {:?}", port.dims(), reference.dims()));
    }
    let flat = |t: &Tensor| -> Result<Vec<f64>, String> {
        t.flatten_all().and_then(|t| t.to_dtype(DType::F64)).and_then(|t| t.to_vec1::<f64>()).map_err(|e| e.to_string())
    };
    let (p, r) = (flat(port)?, flat(reference)?);
    if let Tolerance::Direction = tol {
        return Ok(direction(&p, &r, reference.dtype().is_float()));
    }
    let mut max_abs = 0f64;
    let mut worst = 0f64;
    for (p, r) in p.iter().zip(&r) {
        let d = (p - r).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        max_abs = max_abs.max(d);
        let ratio = match tol {
            Tolerance::Exact => {
                if d == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            }
            Tolerance::Close { atol, rtol } => d / (atol + rtol * r.abs()),
            Tolerance::Direction => unreachable!("handled above"),
        };
        worst = worst.max(ratio);
    }
    Ok((max_abs, worst))
}

/// Direction check of a non-default target: `(max |port − ref|, ratio)` as described at [`compare`].
fn direction(p: &[f64], r: &[f64], float: bool) -> (f64, f64) {
    let max_abs = p.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    if !float {
        let agree = p.iter().zip(r).filter(|(a, b)| a == b).count() as f64 / r.len().max(1) as f64;
        return (max_abs, (1.0 - agree) / (1.0 - MIN_AGREEMENT));
    }
    let dot: f64 = p.iter().zip(r).map(|(a, b)| a * b).sum();
    let norms = p.iter().map(|a| a * a).sum::<f64>().sqrt() * r.iter().map(|b| b * b).sum::<f64>().sqrt();
    let cosine = if norms == 0.0 { f64::from(u8::from(p == r)) } else { dot / norms };
    (max_abs, if cosine.is_nan() { f64::INFINITY } else { (1.0 - cosine) / (1.0 - MIN_COSINE) })
}
