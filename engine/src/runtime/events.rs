//! What the engine reports back: job ids, progress events and finished takes.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Tensor;

use crate::audio::Audio;
use crate::pipeline::request::GenerationRequest;

/// Identifies one submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// A finished job's result: the audio plus everything needed to iterate on it.
#[derive(Debug, Clone)]
pub struct Take {
    /// 48 kHz stereo result.
    pub audio: Audio,
    /// Final latents `[1, T, 64]`; `None` for a job a remote server ran (engine/src/remote), which returns audio
    /// only.
    pub latents: Option<Tensor>,
    /// Source latents `[1, T_src, 64]`, when the job had a source.
    pub source_latents: Option<Tensor>,
    /// The request that produced it (source audio and injected noise are not kept).
    pub request: GenerationRequest,
}

/// Progress and results, in the order they happen. A job's events go to the client that submitted it; `Loading` and
/// `Warning` go to every client connected at the time (runtime/thread.rs `EngineHandle`).
#[derive(Debug, Clone)]
pub enum Event {
    /// The job is waiting; `position` jobs are ahead of it.
    Queued {
        /// The job.
        job: JobId,
        /// Jobs ahead of it (0 = next).
        position: usize,
    },
    /// A model component is being fetched or loaded.
    Loading {
        /// Component or file name.
        component: String,
        /// Bytes done.
        bytes_done: u64,
        /// Bytes in all.
        bytes_total: u64,
    },
    /// The job's inputs are being encoded.
    Encoding {
        /// The job.
        job: JobId,
    },
    /// Diffusion step `k` of `n` finished.
    Step {
        /// The job.
        job: JobId,
        /// Steps done.
        k: usize,
        /// Steps in all.
        n: usize,
        /// Estimated time to the end of the diffusion.
        eta: Duration,
    },
    /// VAE decode tile `tile` of `tiles` finished.
    Decoding {
        /// The job.
        job: JobId,
        /// Tiles done.
        tile: usize,
        /// Tiles in all.
        tiles: usize,
    },
    /// The job finished.
    Done {
        /// The job.
        job: JobId,
        /// Its result.
        take: Arc<Take>,
    },
    /// The job failed; the engine keeps serving other jobs.
    Failed {
        /// The job.
        job: JobId,
        /// What went wrong, for the musician.
        error: String,
    },
    /// The job was cancelled before it finished.
    Cancelled {
        /// The job.
        job: JobId,
    },
    /// Something the user should know that is not a failure (e.g. CUDA unavailable, running on CPU).
    Warning(String),
}

impl Event {
    /// The job the event belongs to; `None` for `Loading` and `Warning`, which concern the engine.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Self::Queued { job, .. }
            | Self::Encoding { job }
            | Self::Step { job, .. }
            | Self::Decoding { job, .. }
            | Self::Done { job, .. }
            | Self::Failed { job, .. }
            | Self::Cancelled { job } => Some(*job),
            Self::Loading { .. } | Self::Warning(_) => None,
        }
    }
}
