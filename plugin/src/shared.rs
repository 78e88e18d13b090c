//! State shared by the audio thread, the job worker and the editor, each part with the access rules of the
//! thread that writes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::capture::CaptureStore;
use crate::params::RetakeParams;
use crate::transport::TransportInfo;

/// Where the current job is.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum JobPhase {
    /// No job.
    #[default]
    Idle,
    /// A job is being prepared or run by the engine.
    Running {
        /// What it is doing ("copying the region", "step 3 of 8", …).
        label: String,
        /// Progress 0..=1.
        fraction: f32,
    },
}

/// What the editor shows about jobs and takes. Written by the worker, never touched by the audio thread.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusBoard {
    /// One line about the engine.
    pub engine: String,
    /// The current job.
    pub job: JobPhase,
    /// The running job's time left as the engine estimates it from the diffusion steps so far; cleared when
    /// the job moves to another stage.
    pub time_left: Option<Duration>,
    /// The last error, until the next job starts.
    pub error: Option<String>,
    /// Takes from the saved state that cannot play, by id, with the reason.
    pub take_problems: BTreeMap<u64, String>,
}

/// Everything the three threads share.
#[derive(Default)]
pub struct Shared {
    /// Parameters and persisted fields.
    pub params: Arc<RetakeParams>,
    /// The transport as the audio thread last saw it.
    pub transport: TransportInfo,
    /// Set by the audio thread on a `generate` rising edge, cleared by the worker.
    generate_requested: AtomicBool,
    /// Set by the audio thread if its processing panicked; it then only passes audio through.
    audio_fault: AtomicBool,
    /// The last activation (numbered by the plugin) after which the worker has loaded the takes of the restored
    /// state and handed the selected one to the audio thread.
    takes_ready: AtomicU64,
    /// The capture store of the current activation, for readers (the audio thread holds its own `Arc`).
    pub capture: RwLock<Option<Arc<CaptureStore>>>,
    /// Status for the editor.
    pub board: Mutex<StatusBoard>,
}

impl Shared {
    /// Shares `params`.
    pub fn new(params: Arc<RetakeParams>) -> Self {
        Self { params, ..Self::default() }
    }

    /// Audio thread (or any). Asks the worker to start a job.
    pub fn request_generate(&self) {
        self.generate_requested.store(true, Ordering::Release);
    }

    /// Worker. Takes a pending job request.
    pub fn take_generate_request(&self) -> bool {
        self.generate_requested.swap(false, Ordering::Acquire)
    }

    /// Audio thread. Records that processing panicked.
    pub fn report_audio_fault(&self) {
        self.audio_fault.store(true, Ordering::Relaxed);
    }

    /// Whether processing panicked since the last activation.
    pub fn audio_fault(&self) -> bool {
        self.audio_fault.load(Ordering::Relaxed)
    }

    /// Clears the fault flag (a new activation starts clean).
    pub fn clear_audio_fault(&self) {
        self.audio_fault.store(false, Ordering::Relaxed);
    }

    /// Worker. The takes are loaded for activation `serial`.
    pub fn mark_takes_ready(&self, serial: u64) {
        self.takes_ready.store(serial, Ordering::Release);
    }

    /// Waits until the worker has loaded the takes for activation `serial`, at most `limit`; whether it has. Not
    /// for the audio thread: `activate()` calls it, so that the first block after opening a project (an offline
    /// render started at once) already plays the selected take.
    pub fn wait_for_takes(&self, serial: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.takes_ready.load(Ordering::Acquire) < serial {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// The current capture store, if the plugin was activated.
    pub fn capture(&self) -> Option<Arc<CaptureStore>> {
        self.capture.read().clone()
    }
}
