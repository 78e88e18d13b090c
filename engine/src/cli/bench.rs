//! `retake bench` (docs/acestep-model.md §12): times the engine on the real ACE-Step 1.5 geometry with random weights,
//! optionally under a VRAM budget, prints the table and optionally writes the JSON that
//! `bench/reference.py --compare` sets beside the PyTorch reference.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use retake_engine::audio::{check_writable, write_bytes};
use retake_engine::bench::{run, BenchOptions};
use retake_engine::error::EngineError;
use retake_engine::model::linear::CpuPrecision;
use retake_engine::model::variant::Variant;
use retake_engine::runtime::{parse_size, DeviceChoice};

/// `retake bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Compute device: cpu, cuda or cuda:N (f32 on the CPU, bf16 on CUDA, as the engine runs).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// The linear layers' weights on the CPU: f32 or bf16 (activations stay f32) [default: bf16 where the CPU has
    /// AVX512-BF16, else f32].
    #[arg(long, value_name = "f32|bf16", env = "RETAKE_CPU_PRECISION")]
    pub precision: Option<CpuPrecision>,
    /// Timed runs per operation, after one untimed warm-up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// VRAM budget, e.g. 3GiB: the DiT and end-to-end groups run under it as a job would (units released
    /// between stages, DiT blocks streamed when the DiT does not fit) and report the budget accounting's peak
    /// beside the RSS peak; a budget below the model's minimum is refused, stating the minimum.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Run only the operations whose name contains this (text, dit, vae_decode, cover, …).
    #[arg(long)]
    pub only: Option<String>,
    /// tokenizer.json for the end-to-end cover and repaint, which random weights come without (e.g.
    /// tests/fixtures/tiny-acestep/Qwen3-Embedding-0.6B/tokenizer.json); without it they are skipped.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint variant whose geometry runs (the 2B geometry for turbo, base, sft and their kin; the XL DiT for
    /// xl-base, xl-sft and xl-turbo).
    #[arg(long, default_value = "turbo")]
    pub variant: Variant,
}

/// Runs the benchmark and prints its table on stdout; exit status 1 with a message on any error.
pub fn main(args: &BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("retake: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> Result<String, EngineError> {
    if let Some(path) = &args.json {
        check_writable(path)?;
    }
    let device = args.device.open()?;
    let options = BenchOptions {
        runs: args.runs as usize,
        budget: args.budget,
        only: args.only.clone(),
        tokenizer: args.tokenizer.clone(),
        seed: args.seed,
        variant: args.variant,
        cpu_precision: args.precision.unwrap_or_default(),
        ..BenchOptions::new(device)
    };
    let report = run(&options)?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| EngineError::invalid(e.to_string()))?;
        write_bytes(path, json.as_bytes())?;
    }
    Ok(report.to_string())
}
