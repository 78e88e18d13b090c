//! The engine thread and its handle: FIFO jobs, progress events, cancellation between steps/tiles, panics
//! caught per job, and a prompt shutdown when the last handle is dropped.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::events::{Event, JobId, Take};
use crate::error::{EngineError, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::lora::LoraSpec;
use crate::model_source::ModelSpec;
use crate::pipeline::request::{GenerationRequest, Progress};
use crate::pipeline::Generator;
use crate::residency::{check_model_budget, ResidencyStats};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU, in f32.
    #[default]
    Cpu,
    /// CUDA device `n`, bf16 weights (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceChoice {
    /// Opens the device (a CUDA device needs the `cuda` feature and a driver).
    pub fn open(self) -> candle_core::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => Device::new_cuda(ordinal),
        }
    }

    /// The dtype the model's weights run in on this device.
    pub fn dtype(self) -> DType {
        match self {
            Self::Cpu => DType::F32,
            Self::Cuda(_) => DType::BF16,
        }
    }
}

/// How to start the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Which checkpoint variant runs and where its files come from.
    pub model: ModelSpec,
    /// Compute device.
    pub device: DeviceChoice,
    /// Most bytes of model weights kept resident at once (`None` = everything may stay loaded).
    pub vram_budget: Option<u64>,
    /// Jobs that may wait in the queue; a submit beyond it fails at once.
    pub queue_capacity: usize,
    /// LoRA adapters merged into the DiT when the model loads (model/lora.rs), in this order.
    pub loras: Vec<LoraSpec>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model: ModelSpec::default(),
            device: DeviceChoice::Cpu,
            vram_budget: None,
            queue_capacity: 32,
            loras: Vec::new(),
        }
    }
}

/// Why a job was not accepted. A refused job gets no id and no events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue already holds `queue_capacity` jobs.
    #[error("the engine queue is full ({0} jobs waiting); wait for a job to finish or cancel one")]
    QueueFull(usize),
    /// The engine thread has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// The configured VRAM budget is below what the model needs (known from the start when the model's files
    /// are on this machine, else once the first job has downloaded them).
    #[error("{0}")]
    BudgetTooSmall(String),
}

/// Counters of the work the engine has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Times the VAE encoder ran on a job's source audio; a source whose latents are still cached skips it.
    pub vae_encodes: u64,
    /// Resident weight bytes and peaks against the VRAM budget, as of the last job's end.
    pub residency: ResidencyStats,
}

struct QueuedJob {
    id: JobId,
    request: GenerationRequest,
}

/// The submitting end of the queue. Submits take it in turn, so ids, `Queued` events and queue order agree:
/// jobs run in id order.
struct Intake {
    jobs: Option<Sender<QueuedJob>>,
    next_id: u64,
}

/// State shared by all clones of a handle; dropping the last clone stops and joins the thread.
struct Shared {
    intake: Mutex<Intake>,
    cancels: Sender<JobId>,
    events: Receiver<Event>,
    event_tx: Sender<Event>,
    capacity: usize,
    stopping: Arc<AtomicBool>,
    vae_encodes: Arc<AtomicU64>,
    residency: Arc<Mutex<ResidencyStats>>,
    /// Set by the engine thread when the model's minimum budget exceeds the configured one.
    budget_refusal: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The running job stops at its next step or tile and the waiting ones are cancelled; closing the job
        // channel then ends the thread's loop.
        self.stopping.store(true, Ordering::Release);
        self.intake.lock().jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A cheap, cloneable handle to the engine thread. No method blocks longer than a channel send.
///
/// Every job [`submit`](Self::submit) accepts ends with exactly one `Done`, `Failed` or `Cancelled` event.
/// Dropping the last handle cancels the running job (at its next step or tile) and the waiting ones, then
/// joins the thread.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

/// Starts engines.
pub struct Engine;

impl Engine {
    /// Starts the engine thread. The model is resolved and loaded lazily, on the first job; only its headers are
    /// read now, when its files are already here and a VRAM budget is set, so that a budget below the model's
    /// minimum is refused at the first submit.
    pub fn spawn(config: EngineConfig) -> EngineHandle {
        let capacity = config.queue_capacity.max(1);
        let (job_tx, job_rx) = channel::bounded::<QueuedJob>(capacity);
        let (cancel_tx, cancel_rx) = channel::unbounded();
        let (event_tx, event_rx) = channel::unbounded();
        let stopping = Arc::new(AtomicBool::new(false));
        let vae_encodes = Arc::new(AtomicU64::new(0));
        let residency = Arc::new(Mutex::new(ResidencyStats::default()));
        let budget_refusal = Arc::new(Mutex::new(budget_refusal_from_headers(&config)));
        let worker = Worker {
            config,
            jobs: job_rx,
            cancels: cancel_rx,
            cancelled: HashSet::new(),
            events: event_tx.clone(),
            stopping: stopping.clone(),
            vae_encodes: vae_encodes.clone(),
            residency: residency.clone(),
            budget_refusal: budget_refusal.clone(),
            generator: None,
        };
        let thread = std::thread::Builder::new()
            .name("retake-engine".into())
            .spawn(move || worker.run())
            .expect("the OS refused to start the engine thread");
        EngineHandle {
            shared: Arc::new(Shared {
                intake: Mutex::new(Intake { jobs: Some(job_tx), next_id: 1 }),
                cancels: cancel_tx,
                events: event_rx,
                event_tx,
                capacity,
                stopping,
                vae_encodes,
                residency,
                budget_refusal,
                thread: Some(thread),
            }),
        }
    }
}

impl EngineHandle {
    /// Queues a job; fails at once when the queue is full, or when the VRAM budget is below the model's minimum
    /// (see [`Engine::spawn`]).
    pub fn submit(&self, request: GenerationRequest) -> std::result::Result<JobId, SubmitError> {
        if let Some(refusal) = self.shared.budget_refusal.lock().clone() {
            return Err(SubmitError::BudgetTooSmall(refusal));
        }
        let mut intake = self.shared.intake.lock();
        let jobs = intake.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        // Only this (locked) side adds to the queue, so a queue with room now still has room at the send.
        if jobs.is_full() {
            return Err(SubmitError::QueueFull(self.shared.capacity));
        }
        let id = JobId(intake.next_id);
        // Announced before the hand-over so it always precedes the job's own events.
        let _ = self.shared.event_tx.send(Event::Queued { job: id, position: jobs.len() });
        match jobs.try_send(QueuedJob { id, request }) {
            Ok(()) => {
                intake.next_id += 1;
                Ok(id)
            }
            Err(e) => {
                let error = match e {
                    TrySendError::Full(_) => SubmitError::QueueFull(self.shared.capacity),
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                };
                // The announced job ends like any other.
                let _ = self.shared.event_tx.send(Event::Failed { job: id, error: error.to_string() });
                intake.next_id += 1;
                Err(error)
            }
        }
    }

    /// Asks the engine to cancel a job: a waiting job is dropped, a running one stops within one step or tile.
    pub fn cancel(&self, job: JobId) {
        let _ = self.shared.cancels.send(job);
    }

    /// The event stream (shared by all clones: each event is delivered to one receiver).
    pub fn events(&self) -> Receiver<Event> {
        self.shared.events.clone()
    }

    /// The engine's work counters, updated before each job's terminal event (a job that panics adds nothing).
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            vae_encodes: self.shared.vae_encodes.load(Ordering::Acquire),
            residency: *self.shared.residency.lock(),
        }
    }
}

/// The engine thread's state.
struct Worker {
    config: EngineConfig,
    jobs: Receiver<QueuedJob>,
    cancels: Receiver<JobId>,
    /// Cancel requests for jobs that have not ended yet.
    cancelled: HashSet<JobId>,
    events: Sender<Event>,
    stopping: Arc<AtomicBool>,
    vae_encodes: Arc<AtomicU64>,
    residency: Arc<Mutex<ResidencyStats>>,
    budget_refusal: Arc<Mutex<Option<String>>>,
    generator: Option<Generator>,
}

impl Worker {
    fn run(mut self) {
        while let Ok(job) = self.jobs.recv() {
            self.cancelled.extend(self.cancels.try_iter());
            let event = if self.stopping.load(Ordering::Acquire) || self.cancelled.contains(&job.id) {
                Event::Cancelled { job: job.id }
            } else {
                self.execute(&job)
            };
            // Jobs run in id order: requests for this job or earlier ones can no longer apply.
            self.cancelled.retain(|&id| id > job.id);
            let _ = self.events.send(event);
        }
    }

    /// Runs one job to its terminal event, turning a panic into `Failed`.
    fn execute(&mut self, job: &QueuedJob) -> Event {
        let (event, panicked) = guarded(job.id, || self.run_job(job));
        if panicked {
            // A panic may leave loaded components half-updated: reload them for the next job.
            self.generator = None;
        }
        event
    }

    fn run_job(&mut self, job: &QueuedJob) -> Result<Take> {
        if self.generator.is_none() {
            self.generator = Some(self.load_generator()?);
        }
        let Self { generator, cancels, cancelled, events, stopping, vae_encodes, residency, .. } = self;
        let generator = generator.as_mut().expect("generator loaded above");
        let id = job.id;
        let mut clock = StepClock::new(Instant::now());
        let mut last = None;
        let mut on_progress = |progress: Progress| {
            cancelled.extend(cancels.try_iter());
            let repeated = last.replace(progress) == Some(progress);
            let now = Instant::now();
            let event = match progress {
                // The pipeline reports the same encoding or decoding progress again between layers and tiles, as a
                // chance to cancel: announce each change once.
                Progress::Encoding | Progress::Decoding { .. } if repeated => None,
                Progress::Encoding => Some(Event::Encoding { job: id }),
                Progress::Step { k, n } => Some(Event::Step { job: id, k, n, eta: clock.eta(k, n, now) }),
                Progress::Decoding { tile, tiles } => Some(Event::Decoding { job: id, tile, tiles }),
            };
            clock.heard(now);
            if let Some(event) = event {
                let _ = events.send(event);
            }
            if stopping.load(Ordering::Acquire) || cancelled.contains(&id) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let encodes_before = generator.vae_encodes();
        let result = generator.generate(&job.request, &mut on_progress);
        vae_encodes.fetch_add((generator.vae_encodes() - encodes_before) as u64, Ordering::AcqRel);
        *residency.lock() = generator.residency();
        let output = result?;
        let mut request = job.request.clone();
        request.source = None;
        request.references = Vec::new();
        request.noise = None;
        Ok(Take { audio: output.audio, latents: output.latents, source_latents: output.source_latents, request })
    }

    fn load_generator(&self) -> Result<Generator> {
        let (device, dtype) = self.open_device();
        let events = self.events.clone();
        let dirs = self.config.model.resolve(&mut |p| {
            let _ =
                events.send(Event::Loading { component: p.file, bytes_done: p.bytes_done, bytes_total: p.bytes_total });
        })?;
        let checkpoint = Checkpoint::open_dirs(&dirs, dtype, &device)?
            .with_variant(self.config.model.variant)
            .with_loras(&self.config.loras)?;
        let generator = Generator::new(checkpoint, self.config.vram_budget);
        if let Err(e @ EngineError::BudgetTooSmall(_)) = &generator {
            // The budget is fixed for this engine: every later submit is refused at once with the same message.
            *self.budget_refusal.lock() = Some(e.to_string());
        }
        generator
    }

    /// The configured device, falling back to the CPU (with a warning) when CUDA cannot be opened.
    fn open_device(&self) -> (Device, DType) {
        match self.config.device {
            DeviceChoice::Cpu => (Device::Cpu, DeviceChoice::Cpu.dtype()),
            choice @ DeviceChoice::Cuda(ordinal) => match choice.open() {
                Ok(device) => (device, choice.dtype()),
                Err(e) => {
                    // candle appends a backtrace when RUST_BACKTRACE is set: the first line is the reason.
                    let reason = e.to_string();
                    let reason = reason.lines().next().unwrap_or_default().trim();
                    let warning = format!("CUDA device {ordinal} unavailable ({reason}); running on the CPU");
                    let _ = self.events.send(Event::Warning(warning));
                    (Device::Cpu, DeviceChoice::Cpu.dtype())
                }
            },
        }
    }
}

/// Times the sampling steps for the ETA of the steps left. Step 1 is timed from the progress report just before it
/// — the encoder reports between its layers, so that is the encoding's end — and later steps from step 1's end, so
/// the encoding's time is never taken for a step's.
struct StepClock {
    /// When the latest progress report came (the job's start before any).
    previous: Instant,
    /// When step 1 ended.
    first_step: Option<Instant>,
}

impl StepClock {
    fn new(start: Instant) -> Self {
        Self { previous: start, first_step: None }
    }

    /// Notes a progress report at `now`.
    fn heard(&mut self, now: Instant) {
        self.previous = now;
    }

    /// The ETA of the steps after step `k` of `n`, which ended at `now`.
    fn eta(&mut self, k: usize, n: usize, now: Instant) -> Duration {
        let per_step = match self.first_step {
            Some(first) if k > 1 => (now - first) / (k - 1) as u32,
            _ => {
                self.first_step = Some(now);
                now - self.previous
            }
        };
        per_step * n.saturating_sub(k) as u32
    }
}

/// The refusal of `config`'s VRAM budget when the model's files are already here and their headers show the
/// budget below the model's minimum. No device is opened: weight sizes depend on the device's dtype only, and the
/// one activation estimate that differs by device (the VAE's, a little larger on a GPU) is set by one-frame
/// shapes at the minimum, far below the condition stage that sets it. A model still to be downloaded, or one
/// that cannot be read, is checked by the first job instead.
fn budget_refusal_from_headers(config: &EngineConfig) -> Option<String> {
    let budget = config.vram_budget?;
    let dirs = config.model.local_dirs()?;
    let checkpoint = Checkpoint::open_dirs(&dirs, config.device.dtype(), &Device::Cpu).ok()?;
    check_model_budget(&checkpoint, budget).err().map(|refusal| refusal.to_string())
}

/// Runs `work` and maps its result, or its panic, to the job's terminal event; says whether it panicked.
fn guarded(job: JobId, work: impl FnOnce() -> Result<Take>) -> (Event, bool) {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(take)) => (Event::Done { job, take: Arc::new(take) }, false),
        Ok(Err(EngineError::Cancelled)) => (Event::Cancelled { job }, false),
        Ok(Err(e)) => (Event::Failed { job, error: e.to_string() }, false),
        Err(panic) => {
            (Event::Failed { job, error: format!("internal error: {}", panic_message(panic.as_ref())) }, true)
        }
    }
}

/// The text a caught panic carried (`panic!("…")` with a literal or a formatted message), or a generic line.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_after_step_1_leaves_out_the_encoding() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut clock = StepClock::new(start);
        // Ten seconds of encoding, reported between its layers; step 1 takes one second.
        for s in 0..=10 {
            clock.heard(at(s));
        }
        assert_eq!(clock.eta(1, 8, at(11)), Duration::from_secs(7));
        clock.heard(at(11));
        assert_eq!(clock.eta(3, 8, at(15)), Duration::from_secs(10), "steps 2 and 3 took 2 s each");
    }

    #[test]
    fn a_panicking_job_becomes_a_failed_event_naming_the_panic() {
        let (event, panicked) = guarded(JobId(7), || panic!("tensor shapes went wrong"));
        assert!(panicked);
        match event {
            Event::Failed { job, error } => {
                assert_eq!(job, JobId(7));
                assert_eq!(error, "internal error: tensor shapes went wrong");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        let (event, panicked) = guarded(JobId(8), || Err(EngineError::Cancelled));
        assert!(!panicked && matches!(event, Event::Cancelled { job: JobId(8) }));
    }
}
