//! One job through the engine thread: submit, show progress, turn Ctrl-C into a cancel, wait for the end.

use std::sync::Arc;

use crossbeam::channel::{self, select, Receiver};
use retake_engine::pipeline::request::GenerationRequest;
use retake_engine::runtime::{Engine, EngineConfig, Event, Take};

use super::progress::ProgressView;
use super::CliError;

/// Exit status after Ctrl-C, as shells report a SIGINT.
pub const INTERRUPTED: u8 = 130;

/// What came out of a finished job.
pub struct Finished {
    /// The result.
    pub take: Arc<Take>,
    /// Warnings the engine gave along the way.
    pub warnings: Vec<String>,
}

/// Runs `request` on a fresh engine. The first Ctrl-C cancels the job (it stops within one step or tile);
/// a second one exits at once.
pub fn run(config: EngineConfig, request: GenerationRequest, view: &ProgressView) -> Result<Finished, CliError> {
    let interrupts = ctrl_c()?;
    let engine = Engine::spawn(config);
    let events = engine.events();
    let job = engine.submit(request)?;
    let mut warnings = Vec::new();
    let mut cancelling = false;
    loop {
        select! {
            recv(events) -> event => {
                let event = event.map_err(|_| CliError::Failed("the engine stopped unexpectedly".into()))?;
                match event {
                    Event::Done { job: j, take } if j == job => return Ok(Finished { take, warnings }),
                    Event::Failed { job: j, error } if j == job => return Err(CliError::Failed(error)),
                    Event::Cancelled { job: j } if j == job => return Err(CliError::Cancelled),
                    Event::Warning(warning) => {
                        view.show(&Event::Warning(warning.clone()));
                        warnings.push(warning);
                    }
                    other => view.show(&other),
                }
            }
            recv(interrupts) -> _ => {
                if cancelling {
                    view.finish();
                    eprintln!("retake: cancelled");
                    std::process::exit(i32::from(INTERRUPTED));
                }
                cancelling = true;
                view.note("cancelling at the next step (Ctrl-C again to quit at once)");
                engine.cancel(job);
            }
        }
    }
}

/// A channel that receives a message on every Ctrl-C (SIGINT; Ctrl-C/Ctrl-Break on Windows).
fn ctrl_c() -> Result<Receiver<()>, CliError> {
    let (tx, rx) = channel::unbounded();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| CliError::Failed(format!("cannot catch Ctrl-C: {e}")))?;
    Ok(rx)
}
