//! `retake serve`: Retake's engine behind the ACE-Step 1.5 REST API, so clients written for the official server
//! (`python -m acestep.api_server`; `ace-step/acestep.vst3`, `ace-step/ACE-Step-DAW`) work with it unchanged.
//! README.md, "`retake serve`", lists what it answers and where it differs from the official server.
//!
//! One engine runs every job, one at a time ([`crate::runtime::Engine`]); a thread follows its events into the
//! tasks table ([`jobs`]) and writes finished takes into a private temporary folder, the only folder
//! `/v1/audio` serves. SIGINT or SIGTERM stops taking tasks, fails the waiting ones with a message, lets the
//! running one finish and be fetched for a few seconds (a second signal cancels it), and removes the folder.

mod auth;
mod body;
mod fields;
mod jobs;
mod output;
mod routes;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::model::variant::Variant;
use crate::runtime::{Engine, EngineConfig, EngineHandle, Event};
use fields::MAX_BATCH;
use jobs::{FollowUp, Jobs, Status};

/// How `retake serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (`127.0.0.1` keeps it on this machine).
    pub host: String,
    /// Port (0 picks a free one; the chosen address is printed).
    pub port: u16,
    /// The API key clients must send; `None` leaves the API open.
    pub api_key: Option<String>,
    /// Tasks that may wait behind the running one; one more is refused with 429.
    pub queue: usize,
    /// The largest request body, in bytes; a larger one is refused with 413.
    pub max_upload_bytes: usize,
    /// How long results stay after their task ended, then are deleted.
    pub keep_results: Duration,
    /// The engine (its queue capacity is set from `queue`).
    pub engine: EngineConfig,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}; pick another --host/--port")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime, the output folder or the connection loop failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An error answer in the official shape: `{"detail": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

/// The official reply envelope.
fn envelope(data: Value) -> Json<Value> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Json(json!({ "data": data, "code": 200, "error": null, "timestamp": timestamp, "extra": null }))
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A seed from the OS's randomness (`use_random_seed`).
fn random_seed() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

/// What every request handler shares.
pub(crate) struct App {
    engine: EngineHandle,
    jobs: Mutex<Jobs>,
    api_key: Option<String>,
    queue: usize,
    max_upload: usize,
    out_dir: PathBuf,
    variant: Variant,
    model_name: String,
    shutting_down: AtomicBool,
    /// Set once the server has stopped: the event follower ends.
    stopped: AtomicBool,
}

/// Runs the server until SIGINT or SIGTERM; prints `listening on http://ADDRESS` on stdout once it takes
/// connections.
pub fn run(config: ServeConfig) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: ServeConfig) -> Result<(), ServeError> {
    let address = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| ServeError::Bind { address: address.clone(), source })?;
    let out = tempfile::Builder::new().prefix("retake-serve-").tempdir()?;
    let out_dir = out.path().canonicalize()?;
    // Room for every take of every task the queue admits, so the engine never refuses one the table took.
    config.engine.queue_capacity = (config.queue + 1) * MAX_BATCH;
    let variant = config.engine.model.variant;
    let engine = Engine::spawn(config.engine.clone());
    let app = Arc::new(App {
        engine: engine.clone(),
        jobs: Mutex::new(Jobs::default()),
        api_key: config.api_key.clone(),
        queue: config.queue,
        max_upload: config.max_upload_bytes,
        out_dir: out_dir.clone(),
        variant,
        model_name: variant.folder().to_owned(),
        shutting_down: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
    });
    let follower = {
        let app = app.clone();
        let events = engine.events();
        std::thread::Builder::new().name("retake-serve-events".into()).spawn(move || follow(&app, &events))?
    };
    let janitor = tokio::spawn(expire(app.clone(), config.keep_results));
    let bound: SocketAddr = listener.local_addr()?;
    println!("listening on http://{bound}");
    eprintln!(
        "retake serve: the ACE-Step 1.5 REST API on http://{bound} ({}, model {}); results in {}",
        if config.api_key.is_some() { "API key required" } else { "no API key" },
        app.model_name,
        out_dir.display()
    );
    let mut signals = signal_count()?;
    let shutdown = {
        let app = app.clone();
        async move {
            let _ = signals.wait_for(|&n| n >= 1).await;
            eprintln!(
                "retake serve: shutting down: waiting tasks fail, the running one finishes (signal again to cancel it)"
            );
            drain(&app, signals).await;
        }
    };
    let served = axum::serve(listener, routes::router(app.clone())).with_graceful_shutdown(shutdown).await;
    janitor.abort();
    app.stopped.store(true, Ordering::Release);
    let _ = follower.join();
    // The engine stops with its last handle: a job cancelled by a second signal ends at its next step.
    drop(app);
    drop(engine);
    drop(out);
    served.map_err(ServeError::from)
}

/// How long the server still answers after the tasks that were running at a shutdown signal have ended, so that
/// their clients can download the results.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Fails the waiting tasks, then waits for the running one to end and gives its client [`SHUTDOWN_GRACE`] to fetch
/// the result; a second signal cancels it (or ends the grace).
async fn drain(app: &App, mut signals: watch::Receiver<u32>) {
    app.shutting_down.store(true, Ordering::Release);
    let running = {
        let mut jobs = app.jobs.lock();
        for id in jobs.ids(Status::Queued) {
            let message = "the server shut down before this task ran; send it again".to_owned();
            for job in jobs.fail(&id, "failed", message) {
                app.engine.cancel(job);
            }
        }
        jobs.ids(Status::Running)
    };
    let wait = async {
        while app.jobs.lock().unfinished() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let finished = tokio::select! {
        () = wait => true,
        _ = signals.wait_for(|&n| n >= 2) => false,
    };
    if !finished {
        let mut jobs = app.jobs.lock();
        for id in running {
            for job in jobs.fail(&id, "cancelled", "cancelled: the server shut down".into()) {
                app.engine.cancel(job);
            }
        }
    } else if !running.is_empty() {
        // Time for the clients polling the finished tasks to fetch their results before they go.
        tokio::select! {
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
            _ = signals.wait_for(|&n| n >= 2) => {}
        }
    }
}

/// Counts the SIGINT and (on Unix) SIGTERM signals received. The listeners are made once: one made after a signal
/// arrived would report that signal again.
fn signal_count() -> std::io::Result<watch::Receiver<u32>> {
    let (count, counted) = watch::channel(0u32);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                count.send_modify(|n| *n += 1);
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            count.send_modify(|n| *n += 1);
        }
    });
    Ok(counted)
}

/// Follows the engine's events into the table, writing finished takes, until the server has stopped.
fn follow(app: &App, events: &crossbeam::channel::Receiver<Event>) {
    while !app.stopped.load(Ordering::Acquire) {
        let Ok(event) = events.recv_timeout(Duration::from_millis(100)) else { continue };
        let follow_up = app.jobs.lock().on_event(&event, &app.out_dir);
        match follow_up {
            FollowUp::None => {}
            FollowUp::Cancel(jobs) => jobs.into_iter().for_each(|job| app.engine.cancel(job)),
            FollowUp::Write { task, index, path, format } => {
                let Event::Done { take, .. } = &event else { continue };
                let written = format.write(&path, &take.audio).map(|()| path).map_err(|e| e.to_string());
                for job in app.jobs.lock().written(&task, index, written) {
                    app.engine.cancel(job);
                }
            }
        }
    }
}

/// Deletes results `keep` after their task ended, checking a few times per `keep` (at least once a minute).
async fn expire(app: Arc<App>, keep: Duration) {
    let period = (keep / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        let files = app.jobs.lock().expire(Instant::now(), keep);
        for file in files {
            let _ = std::fs::remove_file(file);
        }
    }
}
