//! The engine thread and its handles: FIFO jobs from one or more clients, each with its own events and settings
//! (the model reloaded between jobs whose settings differ), cancellation between steps/tiles, panics caught per job,
//! and a prompt shutdown when the last client is dropped.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::clients::{ClientLink, Clients};
use super::events::{Event, JobId, Take};
use crate::error::{EngineError, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::linear::CpuPrecision;
use crate::model::lora::LoraSpec;
use crate::model_source::ModelSpec;
use crate::pipeline::request::{GenerationRequest, Progress};
use crate::pipeline::Generator;
use crate::remote::{self, RemoteServer};
use crate::residency::{check_model_budget, human_bytes, ResidencyStats};

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

/// The engine settings of a client's jobs. The model, device, VRAM budget, variant and LoRA adapters belong to each
/// job: the engine reloads the model between two jobs whose settings differ ([`EngineConfig::loads_same_model`]).
/// The queue capacity is the engine's own, taken from the settings it was spawned with.
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
    /// The linear layers' weights when the model runs on the CPU: f32 or bf16 (model/linear.rs; activations stay
    /// f32). The default is bf16 where the CPU has AVX512-BF16 (README.md, benchmarks), else f32.
    pub cpu_precision: CpuPrecision,
    /// An ACE-Step 1.5 API server that runs the jobs instead of the local model (engine/src/remote): no model loads
    /// here, and the model, device, budget and LoRA settings above are the server's business.
    pub server: Option<RemoteServer>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model: ModelSpec::default(),
            device: DeviceChoice::Cpu,
            vram_budget: None,
            queue_capacity: 32,
            loras: Vec::new(),
            cpu_precision: CpuPrecision::default(),
            server: None,
        }
    }
}

impl EngineConfig {
    /// Whether a model loaded with these settings serves a job with `other`'s unchanged: same model files and
    /// variant, device, VRAM budget, LoRA adapters and CPU precision.
    pub fn loads_same_model(&self, other: &Self) -> bool {
        self.model == other.model
            && self.device == other.device
            && self.vram_budget == other.vram_budget
            && self.loras == other.loras
            && self.cpu_precision == other.cpu_precision
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

/// Counters of the work the engine has done since it started, shared by all its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Times the VAE encoder ran on a job's source audio; a source whose latents are still cached skips it.
    pub vae_encodes: u64,
    /// Times a model was loaded: the first job's load, plus one for each reload for a job with other settings (or
    /// after a job that panicked).
    pub model_loads: u64,
    /// Clients connected now ([`EngineHandle::connect`]; clones of a handle are one client).
    pub clients: usize,
    /// Resident weight bytes and peaks against the VRAM budget, as of the last job's end.
    pub residency: ResidencyStats,
}

/// The counters the engine thread updates and every client reads.
#[derive(Default)]
struct Counters {
    vae_encodes: AtomicU64,
    model_loads: AtomicU64,
    residency: Mutex<ResidencyStats>,
}

struct QueuedJob {
    id: JobId,
    /// Whose job it is: its events go there, and it ends when that client leaves.
    client: Arc<ClientLink>,
    /// The settings its client had when it was submitted.
    config: Arc<EngineConfig>,
    request: GenerationRequest,
}

/// A request to cancel job `.1`, valid only when the job is client `.0`'s.
type CancelRequest = (u64, JobId);

/// The submitting end of the queue. Submits take it in turn, so ids, `Queued` events and queue order agree:
/// jobs run in id order.
struct Intake {
    jobs: Option<Sender<QueuedJob>>,
    next_id: u64,
}

/// The engine thread and what its clients share; dropped with the last client, which stops and joins the thread.
struct Core {
    intake: Mutex<Intake>,
    cancels: Sender<CancelRequest>,
    capacity: usize,
    meters: Meters,
    next_client: AtomicU64,
    thread: Option<JoinHandle<()>>,
}

/// What [`EngineStats`] are read from.
#[derive(Clone)]
struct Meters {
    counters: Arc<Counters>,
    clients: Clients,
}

impl Drop for Core {
    fn drop(&mut self) {
        // Every client has left, so the running job stops at its next step or tile and the waiting ones are
        // cancelled; closing the job channel then ends the thread's loop.
        self.intake.lock().jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One client: its event stream, and its place among the engine's clients until it is dropped.
struct Client {
    link: Arc<ClientLink>,
    events: Receiver<Event>,
    core: Arc<Core>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.link.leave();
        self.core.meters.clients.remove(self.link.id);
    }
}

/// A cheap, cloneable handle to the engine thread: one client of it. No method blocks longer than a channel send.
///
/// Clones are the same client: they share its event stream, settings and jobs. [`connect`](Self::connect) adds
/// another client to the same engine thread (one model, one queue): it sees only its own jobs' events (plus the
/// `Loading` and `Warning` events, which go to every client connected at the time), and cancels only its own jobs.
/// Jobs of all clients run one at a time in submission order.
///
/// Every job [`submit`](Self::submit) accepts ends with exactly one `Done`, `Failed` or `Cancelled` event.
/// Dropping a client's last handle cancels its running job (at its next step or tile) and its waiting ones;
/// dropping the engine's last client also joins the thread.
#[derive(Clone)]
pub struct EngineHandle {
    client: Arc<Client>,
}

/// A handle that does not keep the engine running: [`WeakEngine::connect`] adds a client while the engine still
/// has one, for a process that shares one engine among components that come and go.
#[derive(Clone)]
pub struct WeakEngine {
    core: Weak<Core>,
    meters: Meters,
}

/// Starts engines.
pub struct Engine;

impl Engine {
    /// Starts the engine thread with one client whose settings are `config`. The model is resolved and loaded
    /// lazily, on the first job; only its headers are read now, when its files are already here and a VRAM budget is
    /// set, so that a budget below the model's minimum is refused at the first submit.
    pub fn spawn(config: EngineConfig) -> EngineHandle {
        let capacity = config.queue_capacity.max(1);
        let (job_tx, job_rx) = channel::bounded::<QueuedJob>(capacity);
        let (cancel_tx, cancel_rx) = channel::unbounded();
        let clients = Clients::default();
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            jobs: job_rx,
            cancels: cancel_rx,
            cancelled: HashSet::new(),
            clients: clients.clone(),
            counters: counters.clone(),
            model: None,
        };
        let thread = std::thread::Builder::new()
            .name("retake-engine".into())
            .spawn(move || worker.run())
            .expect("the OS refused to start the engine thread");
        let core = Arc::new(Core {
            intake: Mutex::new(Intake { jobs: Some(job_tx), next_id: 1 }),
            cancels: cancel_tx,
            capacity,
            meters: Meters { counters, clients },
            next_client: AtomicU64::new(1),
            thread: Some(thread),
        });
        EngineHandle::join(core, config)
    }
}

impl WeakEngine {
    /// A new client of the engine with settings `config`, or `None` when the engine's last client has gone.
    pub fn connect(&self, config: EngineConfig) -> Option<EngineHandle> {
        self.core.upgrade().map(|core| EngineHandle::join(core, config))
    }

    /// The engine's work counters ([`EngineHandle::stats`]); once its last client has gone, as they were when it
    /// stopped (no clients). Never keeps the engine running or waits for it.
    pub fn stats(&self) -> EngineStats {
        self.meters.stats()
    }
}

impl EngineHandle {
    /// Adds a client with settings `config` to `core`.
    fn join(core: Arc<Core>, config: EngineConfig) -> Self {
        let (event_tx, events) = channel::unbounded();
        let id = core.next_client.fetch_add(1, Ordering::Relaxed);
        let refusal = budget_refusal_from_headers(&config);
        let link = Arc::new(ClientLink::new(id, event_tx, config, refusal));
        core.meters.clients.add(link.clone());
        Self { client: Arc::new(Client { link, events, core }) }
    }

    /// Another client of the same engine thread, with settings `config` (see [`EngineHandle`]).
    pub fn connect(&self, config: EngineConfig) -> EngineHandle {
        Self::join(self.client.core.clone(), config)
    }

    /// A handle to the engine that does not keep it running.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine { core: Arc::downgrade(&self.client.core), meters: self.client.core.meters.clone() }
    }

    /// Replaces this client's settings for the jobs it submits from now on; a job already submitted keeps its
    /// settings. The engine reloads the model before a job whose settings load another one.
    pub fn set_config(&self, config: EngineConfig) {
        let refusal = budget_refusal_from_headers(&config);
        self.client.link.set_config(config, refusal);
    }

    /// Queues a job with this client's settings; fails at once when the queue is full, or when the VRAM budget is
    /// below the model's minimum (see [`Engine::spawn`]).
    pub fn submit(&self, request: GenerationRequest) -> std::result::Result<JobId, SubmitError> {
        let link = &self.client.link;
        let config = link.config_for_job().map_err(SubmitError::BudgetTooSmall)?;
        let core = &self.client.core;
        let mut intake = core.intake.lock();
        let jobs = intake.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        // Only this (locked) side adds to the queue, so a queue with room now still has room at the send.
        if jobs.is_full() {
            return Err(SubmitError::QueueFull(core.capacity));
        }
        let id = JobId(intake.next_id);
        // Announced before the hand-over so it always precedes the job's own events.
        let _ = link.events.send(Event::Queued { job: id, position: jobs.len() });
        match jobs.try_send(QueuedJob { id, client: link.clone(), config, request }) {
            Ok(()) => {
                intake.next_id += 1;
                Ok(id)
            }
            Err(e) => {
                let error = match e {
                    TrySendError::Full(_) => SubmitError::QueueFull(core.capacity),
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                };
                // The announced job ends like any other.
                let _ = link.events.send(Event::Failed { job: id, error: error.to_string() });
                intake.next_id += 1;
                Err(error)
            }
        }
    }

    /// Asks the engine to cancel one of this client's jobs: a waiting job is dropped, a running one stops within
    /// one step or tile. Another client's job is left alone.
    pub fn cancel(&self, job: JobId) {
        let _ = self.client.core.cancels.send((self.client.link.id, job));
    }

    /// This client's event stream (shared by its clones: each event is delivered to one receiver).
    pub fn events(&self) -> Receiver<Event> {
        self.client.events.clone()
    }

    /// The engine's work counters, updated before each job's terminal event (a job that panics adds nothing).
    pub fn stats(&self) -> EngineStats {
        self.client.core.meters.stats()
    }
}

impl Meters {
    fn stats(&self) -> EngineStats {
        EngineStats {
            vae_encodes: self.counters.vae_encodes.load(Ordering::Acquire),
            model_loads: self.counters.model_loads.load(Ordering::Acquire),
            clients: self.clients.count(),
            residency: *self.counters.residency.lock(),
        }
    }
}

/// The model the engine has loaded, and the settings it was loaded with.
struct LoadedModel {
    config: Arc<EngineConfig>,
    generator: Generator,
}

/// The engine thread's state.
struct Worker {
    jobs: Receiver<QueuedJob>,
    cancels: Receiver<CancelRequest>,
    /// Cancel requests for jobs that have not ended yet.
    cancelled: HashSet<CancelRequest>,
    clients: Clients,
    counters: Arc<Counters>,
    model: Option<LoadedModel>,
}

impl Worker {
    fn run(mut self) {
        while let Ok(job) = self.jobs.recv() {
            self.cancelled.extend(self.cancels.try_iter());
            let event =
                if is_stopped(&job, &self.cancelled) { Event::Cancelled { job: job.id } } else { self.execute(&job) };
            // Jobs run in id order: requests for this job or earlier ones can no longer apply.
            self.cancelled.retain(|&(_, id)| id > job.id);
            let _ = job.client.events.send(event);
        }
    }

    /// Runs one job to its terminal event, turning a panic into `Failed`.
    fn execute(&mut self, job: &QueuedJob) -> Event {
        let (event, panicked) = guarded(job.id, || self.run_job(job));
        if panicked {
            // A panic may leave loaded components half-updated: reload them for the next job.
            self.model = None;
        }
        event
    }

    fn run_job(&mut self, job: &QueuedJob) -> Result<Take> {
        if job.config.server.is_none() {
            self.load_for(job)?;
        }
        let Self { model, cancels, cancelled, counters, .. } = self;
        let id = job.id;
        let events = &job.client.events;
        let mut clock = StepClock::new(Instant::now());
        let mut last = None;
        let mut on_progress = |progress: Progress| {
            cancelled.extend(cancels.try_iter());
            let repeated = last.replace(progress) == Some(progress);
            let now = Instant::now();
            let event = match progress {
                // The pipeline reports the same encoding or decoding progress again between layers and tiles, and the
                // remote backend its latest progress between polls, as a chance to cancel: announce each change once.
                _ if repeated => None,
                Progress::Encoding => Some(Event::Encoding { job: id }),
                Progress::Step { k, n } => Some(Event::Step { job: id, k, n, eta: clock.eta(k, n, now) }),
                Progress::Decoding { tile, tiles } => Some(Event::Decoding { job: id, tile, tiles }),
            };
            clock.heard(now);
            if let Some(event) = event {
                let _ = events.send(event);
            }
            if is_stopped(job, cancelled) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let (audio, latents, source_latents) = match &job.config.server {
            // A server's result comes back as audio only.
            Some(server) => (remote::generate(server, &job.request, &mut on_progress)?, None, None),
            None => {
                let generator = &mut model.as_mut().expect("model loaded above").generator;
                let encodes_before = generator.vae_encodes();
                let result = generator.generate(&job.request, &mut on_progress);
                counters.vae_encodes.fetch_add((generator.vae_encodes() - encodes_before) as u64, Ordering::AcqRel);
                *counters.residency.lock() = generator.residency();
                let output = result?;
                (output.audio, Some(output.latents), output.source_latents)
            }
        };
        let mut request = job.request.clone();
        request.source = None;
        request.references = Vec::new();
        request.noise = None;
        Ok(Take { audio, latents, source_latents, request })
    }

    /// Makes the loaded model the one `job`'s settings ask for: kept when it is, else the old one is dropped (so
    /// the two are never resident at once) and the new one loaded, telling every client why.
    fn load_for(&mut self, job: &QueuedJob) -> Result<()> {
        if let Some(loaded) = &self.model {
            if loaded.config.loads_same_model(&job.config) {
                return Ok(());
            }
            self.model = None;
            let config = &job.config;
            let budget = config.vram_budget.map_or_else(|| "no limit".to_string(), human_bytes);
            self.clients.broadcast(&Event::Warning(format!(
                "reloading the model for a job with other engine settings ({} on {}, budget {budget})",
                config.model.variant, config.device
            )));
        }
        let generator = self.load_generator(job)?;
        self.counters.model_loads.fetch_add(1, Ordering::AcqRel);
        self.model = Some(LoadedModel { config: job.config.clone(), generator });
        Ok(())
    }

    fn load_generator(&self, job: &QueuedJob) -> Result<Generator> {
        let config = &job.config;
        let (device, dtype) = self.open_device(config.device);
        let clients = &self.clients;
        let dirs = config.model.resolve(&mut |p| {
            clients.broadcast(&Event::Loading {
                component: p.file,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
            });
        })?;
        let checkpoint = Checkpoint::open_dirs(&dirs, dtype, &device)?
            .with_variant(config.model.variant)
            .with_loras(&config.loras)?
            .with_cpu_precision(config.cpu_precision);
        let generator = Generator::new(checkpoint, config.vram_budget);
        if let Err(e @ EngineError::BudgetTooSmall(_)) = &generator {
            // The budget is fixed for these settings: the client's later submits are refused at once with the same
            // message, until it changes them.
            job.client.refuse_budget(config, e.to_string());
        }
        generator
    }

    /// The device `choice`, falling back to the CPU (with a warning) when CUDA cannot be opened.
    fn open_device(&self, choice: DeviceChoice) -> (Device, DType) {
        match choice {
            DeviceChoice::Cpu => (Device::Cpu, DeviceChoice::Cpu.dtype()),
            DeviceChoice::Cuda(ordinal) => match choice.open() {
                Ok(device) => (device, choice.dtype()),
                Err(e) => {
                    // candle appends a backtrace when RUST_BACKTRACE is set: the first line is the reason.
                    let reason = e.to_string();
                    let reason = reason.lines().next().unwrap_or_default().trim();
                    let warning = format!("CUDA device {ordinal} unavailable ({reason}); running on the CPU");
                    self.clients.broadcast(&Event::Warning(warning));
                    (Device::Cpu, DeviceChoice::Cpu.dtype())
                }
            },
        }
    }
}

/// Whether `job` should stop: its client has left or asked to cancel it.
fn is_stopped(job: &QueuedJob, cancelled: &HashSet<CancelRequest>) -> bool {
    job.client.is_gone() || cancelled.contains(&(job.client.id, job.id))
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
