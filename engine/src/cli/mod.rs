//! The `retake` command line (docs/acestep-model.md §13): parses the arguments, checks the output can be written,
//! reads the source audio, runs one job through the engine thread, writes the result as 24-bit WAV (atomically) and
//! prints a one-line JSON summary on stdout.

mod args;
mod bench;
mod clip;
mod job;
mod progress;
mod request;
mod summary;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use retake_engine::audio::{check_writable, write_wav, WavFormat};
use retake_engine::error::EngineError;
use retake_engine::runtime::SubmitError;
use retake_engine::serve::ServeConfig;

use args::{Cli, Command, Invocation, ServeArgs};
use clip::SourceClip;
use progress::ProgressView;

/// Why a run did not produce a file.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input, a missing model, an unreadable or unwritable file.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine did not take the job.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The job failed inside the engine.
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C.
    #[error("cancelled")]
    Cancelled,
}

/// Gives every allocation of 32 MiB or more its own mapping, returned to the system when it is freed, and keeps
/// smaller ones on the heap (glibc's `M_MMAP_THRESHOLD`, mallopt(3); 32 MiB is the most it takes on 64-bit).
/// Left to itself glibc raises the threshold as buffers are freed and its heap then keeps what one stage freed: a
/// 10 s bf16 cover peaked 0.07–0.3 GB higher. A threshold of 1 MiB saved that too, but mapped, zeroed and unmapped
/// every DiT activation (a few MiB each) on every layer: the 30 s DiT step spent a third of its time in page faults
/// (README, benchmarks). The VAE's buffers are hundreds of MiB and still go back to the system. The plugin leaves its
/// host's allocator as the host set it.
fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning value of the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// Runs the command line; exit status 0 on success, 1 on an error, 130 after Ctrl-C (2 for bad arguments).
pub fn main() -> ExitCode {
    map_large_buffers();
    let command = match Cli::parse().invocation {
        Invocation::Task(command) => *command,
        Invocation::Bench(args) => return bench::main(&args),
        Invocation::Serve(args) => return serve(*args),
    };
    let view = ProgressView::for_stderr();
    let outcome = run(&command, &view);
    view.finish();
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(CliError::Cancelled) => {
            eprintln!("retake: cancelled");
            ExitCode::from(job::INTERRUPTED)
        }
        Err(e) => {
            eprintln!("retake: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `retake serve` until SIGINT or SIGTERM: exit status 0 after a clean shutdown, 1 when it cannot start.
fn serve(args: ServeArgs) -> ExitCode {
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key.filter(|key| !key.is_empty()),
        queue: args.queue as usize,
        max_upload_bytes: (args.max_upload_mb as usize) << 20,
        keep_results: args.keep_results,
        engine: request::engine_config(&args.engine),
    };
    match retake_engine::serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retake serve: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &Command, view: &ProgressView) -> Result<serde_json::Value, CliError> {
    let started = Instant::now();
    // Refused before the job, not after minutes of work; the write itself replaces the file only once complete.
    check_writable(command.output())?;
    let source = command.input().map(SourceClip::read).transpose()?;
    let seed = command.common().seed.unwrap_or_else(request::random_seed);
    let request = request::build(command, source.as_ref(), seed)?;
    let finished = job::run(request::task_engine_config(command.common())?, request, view)?;
    let audio = match &source {
        Some(clip) => clip.render(&finished.take.audio, request::keeps_original(command))?,
        None => finished.take.audio.clone(),
    };
    write_wav(command.output(), &audio, WavFormat::Int24)?;
    let take = &finished.take.request;
    Ok(summary::summary(command, source.as_ref(), &audio, take, started.elapsed(), &finished.warnings))
}
