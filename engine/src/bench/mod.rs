//! `retake bench` (docs/acestep-model.md §12): the engine timed operation by operation on the real ACE-Step 1.5
//! geometry with seeded random weights, each group's model built, run and dropped in turn, with its peak resident
//! memory. The DiT and end-to-end groups run through the engine's residency, under the VRAM budget if one is
//! given, and report its accounting beside the RSS. `bench/compare.sh` sets these numbers beside the PyTorch
//! reference's (`bench/reference.py`).

mod components;
mod end_to_end;
mod measure;
mod report;

use std::f32::consts::TAU;
use std::path::PathBuf;

use candle_core::{DType, Device, DeviceLocation, Shape, Tensor};

pub use end_to_end::{CAPTION, LYRICS, REPAINT_RANGE};
pub use report::{BenchReport, GroupReport, OpReport, ResidencyReport, Stats};

use measure::{current_rss, peak_rss, release_free_memory, reset_peak_rss, selected, Timer};

use crate::audio::{Audio, MODEL_SAMPLE_RATE};
use crate::error::{EngineError, Result};
use crate::kernels::cuda::device_memory;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{AceStepConfig, Qwen3Config, VaeConfig};
use crate::model::linear::CpuPrecision;
use crate::model::silence::SilenceLatent;
use crate::model::variant::Variant;
use crate::model::weights::Weights;
use crate::residency::{check_budget, Inventory, UnitSizes};

/// Caption tokens through the text encoder (a typical caption prompt: docs/acestep-model.md §12's measured runs use
/// 70).
pub const CAPTION_TOKENS: usize = 70;
/// Lyric tokens; with one timbre reference and the caption they pack into [`ENCODER_STATES`] states.
pub const LYRIC_TOKENS: usize = 229;
/// Packed encoder states the DiT cross-attends to (`L_enc` = lyric + 1 reference + caption).
pub const ENCODER_STATES: usize = LYRIC_TOKENS + 1 + CAPTION_TOKENS;
/// Seconds of audio of the VAE, diffusion and end-to-end workloads.
pub const CLIP_SECONDS: usize = 10;
/// Seconds of audio of the long DiT step.
pub const LONG_SECONDS: usize = 30;
/// Turbo schedule shift.
pub const SHIFT: f64 = 3.0;
/// Frames of the synthetic silence latent (the real one holds 600 s).
const SILENCE_FRAMES: usize = 15_000;

/// What to benchmark, where.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Compute device.
    pub device: Device,
    /// Weight and activation dtype (the runtime's choice: f32 on the CPU, bf16 on CUDA).
    pub dtype: DType,
    /// The linear layers' weights on the CPU in f32: f32 or bf16 (model/linear.rs; the engine's default unless
    /// said).
    pub cpu_precision: CpuPrecision,
    /// Timed runs per operation, after one untimed warm-up.
    pub runs: usize,
    /// VRAM budget (bytes of weights and activations) the DiT and end-to-end groups run under, through the
    /// engine's residency: units released between stages, DiT blocks streamed when the DiT does not fit whole.
    /// A budget below the model's minimum is refused before anything runs. The text, condition and VAE groups
    /// each hold one component, which fits any accepted budget, and run as without one.
    pub budget: Option<u64>,
    /// Only operations whose name contains this string run (`dit`, `vae_decode_10s`, …).
    pub only: Option<String>,
    /// A `tokenizer.json` for the end-to-end runs, which random weights come without; without one they are
    /// skipped (`tests/fixtures/tiny-acestep/Qwen3-Embedding-0.6B/tokenizer.json` has the real vocabulary).
    pub tokenizer: Option<PathBuf>,
    /// Seed of the random weights.
    pub seed: u64,
    /// The checkpoint whose geometry runs (`turbo` by default; the XL variants run the XL DiT).
    pub variant: Variant,
}

impl BenchOptions {
    /// Three runs of everything on `device` in the runtime's dtype for it, without the end-to-end runs.
    pub fn new(device: Device) -> Self {
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        Self {
            device,
            dtype,
            cpu_precision: CpuPrecision::default(),
            runs: 3,
            budget: None,
            only: None,
            tokenizer: None,
            seed: 0,
            variant: Variant::Turbo,
        }
    }
}

/// Operation groups, in the order they run; each holds one model at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Text,
    Condition,
    Dit,
    Vae,
    EndToEnd,
}

impl Group {
    const ALL: [Group; 5] = [Group::Text, Group::Condition, Group::Dit, Group::Vae, Group::EndToEnd];

    fn name(self) -> &'static str {
        match self {
            Group::Text => "text",
            Group::Condition => "condition",
            Group::Dit => "dit",
            Group::Vae => "vae",
            Group::EndToEnd => "end_to_end",
        }
    }

    /// The operations the group times (names shared with `bench/reference.py`).
    fn ops(self) -> &'static [&'static str] {
        match self {
            Group::Text => &["text_encoder"],
            Group::Condition => &["condition_encoder"],
            Group::Dit => &["dit_step_10s", "dit_step_30s", "diffusion_10s"],
            Group::Vae => &["vae_encode_10s", "vae_decode_10s"],
            Group::EndToEnd => &["cover_10s", "repaint_10s"],
        }
    }

    /// Parameters the group's model holds, as `variant`'s checkpoint stores them.
    fn parameters(self, variant: Variant) -> u64 {
        let ckpt = random_checkpoint(variant, 0, DType::F32, &Device::Cpu);
        let stored = Inventory::from_geometry(&ckpt.acestep, &ckpt.vae, &ckpt.qwen3);
        match self {
            Group::Text => stored.text.elements_under(&[""]),
            Group::Condition => stored.acestep.elements_under(&["encoder", "null_condition_emb"]),
            Group::Dit => stored.acestep.elements_under(&["decoder"]),
            Group::Vae => stored.vae.elements_under(&[""]),
            Group::EndToEnd => {
                [&stored.acestep, &stored.vae, &stored.text].iter().map(|f| f.elements_under(&[""])).sum()
            }
        }
    }
}

/// Runs every selected operation group and reports the timings and peak memory.
pub fn run(options: &BenchOptions) -> Result<BenchReport> {
    // Random weights open no checkpoint, where a bad RETAKE_CPU_ISA is refused (`Weights::open`).
    #[cfg(target_arch = "x86_64")]
    if options.device.is_cpu() {
        crate::kernels::cpu::isa::Isa::current().map_err(EngineError::invalid)?;
    }
    if options.runs == 0 {
        return Err(EngineError::invalid("the benchmark needs at least 1 timed run per operation"));
    }
    if let Some(budget) = options.budget {
        let ckpt = checkpoint(options);
        check_budget(&ckpt, &UnitSizes::from_geometry(&ckpt, SILENCE_FRAMES), budget)?;
    }
    let only = options.only.as_deref();
    let groups = Group::ALL
        .into_iter()
        .filter(|group| group.ops().iter().any(|op| selected(only, op)))
        .map(|group| run_group(group, options))
        .collect::<Result<Vec<_>>>()?;
    if groups.is_empty() {
        let all: Vec<&str> = Group::ALL.iter().flat_map(|g| g.ops().iter().copied()).collect();
        return Err(EngineError::invalid(format!(
            "no benchmark operation matches `{}`; the operations are {}",
            only.unwrap_or_default(),
            all.join(", ")
        )));
    }
    Ok(BenchReport {
        engine: "retake".into(),
        variant: options.variant.name().into(),
        device: device_name(&options.device),
        dtype: checkpoint(options).matrix_dtype().as_str().into(),
        threads: candle_core::utils::get_num_threads(),
        runs: options.runs,
        groups,
    })
}

fn run_group(group: Group, options: &BenchOptions) -> Result<GroupReport> {
    let weights_bytes = group.parameters(options.variant) * options.dtype.size_in_bytes() as u64;
    let mut report = GroupReport {
        name: group.name().into(),
        weights_bytes,
        rss_before_bytes: None,
        peak_rss_bytes: None,
        peak_device_bytes: None,
        residency: None,
        skipped: None,
        ops: Vec::new(),
    };
    if group == Group::EndToEnd && options.tokenizer.is_none() {
        report.skipped = Some("random weights come without a tokenizer.json; pass one to run it".into());
        return Ok(report);
    }
    release_free_memory();
    report.rss_before_bytes = current_rss();
    let peak_is_per_group = reset_peak_rss();
    let device_peak_is_per_group = device_memory::reset_peak(&options.device);
    let mut timer = Timer::new(options.runs, &options.device, options.only.as_deref());
    // Only the DiT and end-to-end groups run through the residency and have its accounting to report.
    let residency = match group {
        Group::Text => components::text(options, &mut timer).map(|()| None),
        Group::Condition => components::condition(options, &mut timer).map(|()| None),
        Group::Dit => components::dit(options, &mut timer).map(Some),
        Group::Vae => components::vae(options, &mut timer).map(|()| None),
        Group::EndToEnd => end_to_end::end_to_end(options, &mut timer).map(Some),
    }?;
    let layers = AceStepConfig::for_variant(options.variant).num_hidden_layers;
    report.residency = residency.map(|stats| ResidencyReport::new(&stats, layers));
    report.ops = timer.finish();
    report.peak_rss_bytes = if peak_is_per_group { peak_rss() } else { None };
    report.peak_device_bytes = if device_peak_is_per_group { device_memory::peak(&options.device) } else { None };
    Ok(report)
}

/// `cpu`, `cuda:0`, `metal:0`.
fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The benchmark's seeded random weights in its dtype on its device, the linear layers' in its precision.
fn weights(options: &BenchOptions) -> Weights {
    Weights::random(options.seed, options.dtype, &options.device).with_matrix_dtype(checkpoint(options).matrix_dtype())
}

/// The whole model with the benchmark's random weights, for the groups that run through the engine's residency.
fn checkpoint(options: &BenchOptions) -> Checkpoint {
    random_checkpoint(options.variant, options.seed, options.dtype, &options.device)
        .with_cpu_precision(options.cpu_precision)
}

/// `variant`'s real geometry (its DiT and encoder side, the VAE, Qwen3-Embedding-0.6B) with seeded random weights.
fn random_checkpoint(variant: Variant, seed: u64, dtype: DType, device: &Device) -> Checkpoint {
    let acestep = AceStepConfig::for_variant(variant);
    Checkpoint::random(acestep, VaeConfig::oobleck_48k(), Qwen3Config::embedding_0_6b(), seed, dtype, device)
}

/// An all-zero silence latent of [`SILENCE_FRAMES`] frames, which random weights come without.
fn silence(options: &BenchOptions) -> Result<SilenceLatent> {
    let channels = AceStepConfig::turbo().audio_acoustic_hidden_dim;
    SilenceLatent::from_frames(Tensor::zeros((SILENCE_FRAMES, channels), options.dtype, &options.device)?)
}

/// Standard-normal activations of `shape` in the benchmark's dtype on its device.
fn normal(options: &BenchOptions, shape: impl Into<Shape>) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, shape, &options.device)?.to_dtype(options.dtype)?)
}

/// Latent frames of `seconds` of audio (25 Hz).
fn latent_frames(seconds: usize) -> usize {
    seconds * MODEL_SAMPLE_RATE as usize / VaeConfig::oobleck_48k().hop()
}

/// A `seconds`-long 48 kHz stereo test signal (two partials, a different pitch per `variant`).
fn test_clip(seconds: usize, variant: usize) -> Audio {
    let rate = MODEL_SAMPLE_RATE as f32;
    let pitch = 220.0 + 10.0 * variant as f32;
    let channel = |phase: f32| -> Vec<f32> {
        (0..seconds * MODEL_SAMPLE_RATE as usize)
            .map(|i| {
                let t = i as f32 / rate;
                0.5 * (TAU * pitch * t + phase).sin() + 0.2 * (TAU * 3.0 * pitch * t).sin()
            })
            .collect()
    };
    Audio::new(MODEL_SAMPLE_RATE, vec![channel(0.0), channel(0.5)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_seconds_are_250_latent_frames_and_l_enc_is_300() {
        assert_eq!(latent_frames(CLIP_SECONDS), 250);
        assert_eq!(latent_frames(LONG_SECONDS), 750);
        assert_eq!(ENCODER_STATES, 300);
    }

    #[test]
    fn test_clips_differ_per_variant_and_stay_in_range() {
        let (a, b) = (test_clip(1, 0), test_clip(1, 1));
        assert_eq!((a.channels.len(), a.len()), (2, 48_000));
        assert_ne!(a.channels[0], b.channels[0]);
        assert!(a.channels.iter().flatten().all(|s| s.abs() <= 0.7));
    }

    #[test]
    fn zero_runs_and_unknown_operations_are_invalid_input() {
        let options = BenchOptions { runs: 0, ..BenchOptions::new(Device::Cpu) };
        assert!(matches!(run(&options), Err(EngineError::InvalidInput(_))));
        let options = BenchOptions { only: Some("no_such_op".into()), ..BenchOptions::new(Device::Cpu) };
        let err = run(&options).unwrap_err().to_string();
        assert!(err.contains("no_such_op") && err.contains("dit_step_10s"), "{err}");
    }

    #[test]
    fn a_budget_below_the_models_minimum_is_refused_with_the_engines_message_before_anything_runs() {
        let budget = 1 << 30;
        let ckpt = checkpoint(&BenchOptions::new(Device::Cpu));
        let engine = check_budget(&ckpt, &UnitSizes::from_geometry(&ckpt, SILENCE_FRAMES), budget).unwrap_err();
        // Nothing is built before the refusal: this would otherwise run the real-geometry DiT.
        let options =
            BenchOptions { budget: Some(budget), only: Some("dit_step_10s".into()), ..BenchOptions::new(Device::Cpu) };
        let err = run(&options).unwrap_err();
        assert!(matches!(err, EngineError::BudgetTooSmall(_)), "{err}");
        assert_eq!(err.to_string(), engine.to_string());
        assert!(err.to_string().contains("needs at least") && err.to_string().contains("1.00 GiB"), "{err}");
    }

    #[test]
    fn each_group_counts_the_parameters_its_part_of_the_checkpoint_stores() {
        let counts = Group::ALL.map(|group| group.parameters(Variant::Turbo));
        // docs/acestep-model.md §1 (the VAE as DiffSynth 2.1.12 counts it); end to end is all three files.
        assert_eq!(
            counts,
            [595_776_512, 608_369_664, 1_575_458_880, 168_695_426, 2_393_872_518 + 168_695_426 + 595_776_512]
        );
        // The XL model file holds 4,987,310,726 parameters (tests/fixtures-variants/README.md, the real layout
        // check against DiffSynth's registered XL hash); its encoder side keeps the 2B widths.
        let xl = Group::ALL.map(|group| group.parameters(Variant::XlTurbo));
        assert_eq!(xl[4], 4_987_310_726 + 168_695_426 + 595_776_512);
        assert_eq!((xl[0], xl[1], xl[3]), (counts[0], counts[1], counts[3]));
    }

    #[test]
    fn the_synthetic_assets_follow_the_options() {
        let options = BenchOptions { seed: 9, dtype: DType::BF16, ..BenchOptions::new(Device::Cpu) };
        let ckpt = checkpoint(&options);
        assert_eq!((ckpt.dtype(), ckpt.root()), (DType::BF16, None));
        let silence = silence(&options).unwrap();
        assert_eq!((silence.len(), silence.channels()), (SILENCE_FRAMES, ckpt.acestep.audio_acoustic_hidden_dim));
    }

    #[test]
    fn the_precision_reaches_the_weights_and_the_report_on_the_cpu_only() {
        for precision in [CpuPrecision::F32, CpuPrecision::Bf16] {
            let options = BenchOptions { cpu_precision: precision, ..BenchOptions::new(Device::Cpu) };
            assert_eq!(weights(&options).matrix_dtype(), precision.matrix_dtype());
            assert_eq!(checkpoint(&options).matrix_dtype(), precision.matrix_dtype());
            let report = run(&BenchOptions { only: Some("cover".into()), ..options }).unwrap();
            assert_eq!(report.dtype, precision.name());
        }
        let bf16 =
            BenchOptions { dtype: DType::BF16, cpu_precision: CpuPrecision::F32, ..BenchOptions::new(Device::Cpu) };
        assert_eq!(weights(&bf16).matrix_dtype(), DType::BF16, "a bf16 model keeps bf16 matrices");
    }

    #[test]
    fn end_to_end_without_a_tokenizer_is_skipped() {
        let options = BenchOptions { only: Some("cover".into()), ..BenchOptions::new(Device::Cpu) };
        let report = run(&options).unwrap();
        assert!(report.groups[0].skipped.as_deref().unwrap().contains("tokenizer.json"));
    }
}
