//! The engine thread and its handle: FIFO jobs, progress events, cancellation between steps/tiles, panics
//! caught per job, and a clean shutdown when the last handle is dropped.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::{DType, Device};
use crossbeam::channel::{self, Receiver, Sender, TryRecvError, TrySendError};

use super::events::{Event, JobId, Take};
use crate::error::{EngineError, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model_source::ModelSource;
use crate::pipeline::request::{GenerationRequest, Progress};
use crate::pipeline::Generator;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU, in f32.
    #[default]
    Cpu,
    /// CUDA device `n`, bf16 weights (needs the `cuda` feature).
    Cuda(usize),
}

/// How to start the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the model files come from.
    pub model: ModelSource,
    /// Compute device.
    pub device: DeviceChoice,
    /// Most bytes of model weights kept resident at once (`None` = everything may stay loaded).
    pub vram_budget: Option<u64>,
    /// Jobs that may wait in the queue; a submit beyond it fails at once.
    pub queue_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { model: ModelSource::default(), device: DeviceChoice::Cpu, vram_budget: None, queue_capacity: 32 }
    }
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue already holds `queue_capacity` jobs.
    #[error("the engine queue is full ({0} jobs waiting); wait for a job to finish or cancel one")]
    QueueFull(usize),
    /// The engine thread has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

struct QueuedJob {
    id: JobId,
    request: GenerationRequest,
}

/// State shared by all clones of a handle; dropping the last clone stops and joins the thread.
struct Shared {
    jobs: Option<Sender<QueuedJob>>,
    cancels: Sender<JobId>,
    events: Receiver<Event>,
    event_tx: Sender<Event>,
    next_id: AtomicU64,
    waiting: Arc<AtomicUsize>,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop after the current job.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A cheap, cloneable handle to the engine thread. No method blocks longer than a channel send.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

/// Starts engines.
pub struct Engine;

impl Engine {
    /// Starts the engine thread. The model is resolved and loaded lazily, on the first job.
    pub fn spawn(config: EngineConfig) -> EngineHandle {
        let (job_tx, job_rx) = channel::bounded::<QueuedJob>(config.queue_capacity.max(1));
        let (cancel_tx, cancel_rx) = channel::unbounded();
        let (event_tx, event_rx) = channel::unbounded();
        let waiting = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            config: config.clone(),
            jobs: job_rx,
            cancels: cancel_rx,
            cancelled: HashSet::new(),
            events: event_tx.clone(),
            waiting: waiting.clone(),
            generator: None,
        };
        let thread = std::thread::Builder::new()
            .name("retake-engine".into())
            .spawn(move || worker.run())
            .expect("the OS refused to start the engine thread");
        EngineHandle {
            shared: Arc::new(Shared {
                jobs: Some(job_tx),
                cancels: cancel_tx,
                events: event_rx,
                event_tx,
                next_id: AtomicU64::new(1),
                waiting,
                capacity: config.queue_capacity.max(1),
                thread: Some(thread),
            }),
        }
    }
}

impl EngineHandle {
    /// Queues a job; fails at once when the queue is full.
    pub fn submit(&self, request: GenerationRequest) -> std::result::Result<JobId, SubmitError> {
        let id = JobId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let jobs = self.shared.jobs.as_ref().ok_or(SubmitError::Stopped)?;
        let position = self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        // Announced before the hand-over so it always precedes the job's own events; a refused job then gets
        // its terminal `Failed` like any other.
        let _ = self.shared.event_tx.send(Event::Queued { job: id, position });
        if let Err(e) = jobs.try_send(QueuedJob { id, request }) {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            let error = match e {
                TrySendError::Full(_) => SubmitError::QueueFull(self.shared.capacity),
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            };
            let _ = self.shared.event_tx.send(Event::Failed { job: id, error: error.to_string() });
            return Err(error);
        }
        Ok(id)
    }

    /// Asks the engine to cancel a job: a waiting job is dropped, a running one stops within one step or tile.
    pub fn cancel(&self, job: JobId) {
        let _ = self.shared.cancels.send(job);
    }

    /// The event stream (shared by all clones: each event is delivered to one receiver).
    pub fn events(&self) -> Receiver<Event> {
        self.shared.events.clone()
    }
}

/// The engine thread's state.
struct Worker {
    config: EngineConfig,
    jobs: Receiver<QueuedJob>,
    cancels: Receiver<JobId>,
    cancelled: HashSet<JobId>,
    events: Sender<Event>,
    waiting: Arc<AtomicUsize>,
    generator: Option<Generator>,
}

impl Worker {
    fn run(mut self) {
        while let Ok(job) = self.jobs.recv() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.drain_cancels();
            if self.cancelled.remove(&job.id) {
                self.emit(Event::Cancelled { job: job.id });
                continue;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| self.run_job(&job)));
            let event = match outcome {
                Ok(Ok(take)) => Event::Done { job: job.id, take: Arc::new(take) },
                Ok(Err(EngineError::Cancelled)) => Event::Cancelled { job: job.id },
                Ok(Err(e)) => Event::Failed { job: job.id, error: e.to_string() },
                Err(panic) => {
                    // A panic may leave loaded components half-updated: reload them for the next job.
                    self.generator = None;
                    Event::Failed { job: job.id, error: format!("internal error: {}", panic_message(&panic)) }
                }
            };
            self.cancelled.remove(&job.id);
            self.emit(event);
        }
    }

    fn emit(&self, event: Event) {
        // A dropped receiver only means nobody listens any more.
        let _ = self.events.send(event);
    }

    fn drain_cancels(&mut self) {
        loop {
            match self.cancels.try_recv() {
                Ok(id) => {
                    self.cancelled.insert(id);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    fn run_job(&mut self, job: &QueuedJob) -> Result<Take> {
        if self.generator.is_none() {
            self.generator = Some(self.load_generator()?);
        }
        self.emit(Event::Encoding { job: job.id });
        let started = Instant::now();
        let id = job.id;
        let events = self.events.clone();
        let cancels = self.cancels.clone();
        let mut cancelled = std::mem::take(&mut self.cancelled);
        let mut on_progress = |progress: Progress| {
            while let Ok(c) = cancels.try_recv() {
                cancelled.insert(c);
            }
            let event = match progress {
                Progress::Encoding => Event::Encoding { job: id },
                Progress::Step { k, n } => {
                    let per_step = started.elapsed() / k.max(1) as u32;
                    Event::Step { job: id, k, n, eta: per_step * (n - k.min(n)) as u32 }
                }
                Progress::Decoding { tile, tiles } => Event::Decoding { job: id, tile, tiles },
            };
            let _ = events.send(event);
            if cancelled.contains(&id) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let generator = self.generator.as_mut().expect("generator loaded above");
        let result = generator.generate(&job.request, &mut on_progress);
        self.cancelled = cancelled;
        let output = result?;
        let mut request = job.request.clone();
        request.source = None;
        request.noise = None;
        Ok(Take { audio: output.audio, latents: output.latents, source_latents: output.source_latents, request })
    }

    fn load_generator(&self) -> Result<Generator> {
        let (device, dtype) = self.open_device();
        let events = self.events.clone();
        let root = self.config.model.resolve(&mut |p| {
            let _ = events.send(Event::Loading { component: p.file, bytes_done: p.bytes_done, bytes_total: p.bytes_total });
        })?;
        let checkpoint = Checkpoint::open(&root, dtype, &device)?;
        Ok(Generator::new(checkpoint))
    }

    /// The configured device, falling back to the CPU (with a warning) when CUDA cannot be opened.
    fn open_device(&self) -> (Device, DType) {
        match self.config.device {
            DeviceChoice::Cpu => (Device::Cpu, DType::F32),
            DeviceChoice::Cuda(ordinal) => match Device::new_cuda(ordinal) {
                Ok(device) => (device, DType::BF16),
                Err(e) => {
                    self.emit(Event::Warning(format!("CUDA device {ordinal} unavailable ({e}); running on the CPU")));
                    (Device::Cpu, DType::F32)
                }
            },
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the job panicked".into())
}
