//! A blocking client of the ACE-Step 1.5 REST API (ureq): `/health`, `/release_task` as multipart with the source
//! uploaded, `/query_result`, the result's download and `POST /v1/cancel` where the server has it. Every exchange
//! runs on a short-lived thread while the caller's `tick` is asked every [`TICK`] whether to stop, so a cancel
//! never waits for the network; a server busy with a full queue (429) is retried after a growing pause.

use std::io;
use std::time::Duration;

use crossbeam::channel::{self, RecvTimeoutError};
use serde_json::{json, Value};
use ureq::unversioned::multipart::{Form, Part};
use ureq::Agent;

use super::reply::{self, JobState};
use super::RemoteServer;
use crate::error::{EngineError, Result};

/// How often a waiting client asks whether to stop.
pub const TICK: Duration = Duration::from_millis(100);
/// Pauses before the retries of a request the server refused with 429 (queue full).
const BUSY_PAUSES: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4), Duration::from_secs(8)];
/// The largest result downloaded: 600 s of 48 kHz stereo as 32-bit samples is 230 MB.
const MAX_DOWNLOAD_BYTES: u64 = 320 << 20;
/// The largest JSON reply read.
const MAX_REPLY_BYTES: u64 = 8 << 20;
/// How long a cancel request may hold up the end of a cancelled job.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Asked between waits: `Err` (normally [`EngineError::Cancelled`]) stops the exchange.
pub type Tick<'a> = dyn FnMut() -> Result<()> + 'a;

/// A file part of `/release_task`.
pub struct Upload {
    /// The form field (`src_audio`, `reference_audio`).
    pub field: &'static str,
    /// The WAV file's bytes.
    pub wav: Vec<u8>,
}

/// One server's client.
pub struct Client {
    agent: Agent,
    server: RemoteServer,
}

/// A finished exchange: the HTTP status and the body (text for JSON replies, bytes for a download).
struct Exchange<B> {
    status: u16,
    body: B,
}

impl Client {
    /// A client of `server` with connect and transfer timeouts (a polled job never waits on one of them: each
    /// exchange is short).
    pub fn new(server: &RemoteServer) -> Self {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_send_body(Some(Duration::from_secs(600)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .user_agent(concat!("retake/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { agent: Agent::new_with_config(config), server: server.clone() }
    }

    /// The server's address, for messages.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// `GET /health`: the server is up and speaks the API.
    pub fn health(&self, tick: &mut Tick) -> Result<()> {
        let data = self.json("/health", tick, |agent, url, auth| with_auth(agent.get(url), auth).call())?;
        reply::health(&data).map_err(|what| self.malformed(&what))
    }

    /// `POST /release_task` as multipart: the text `fields` and the file `uploads`; the job's task id.
    pub fn release_task(&self, fields: &[(String, String)], uploads: Vec<Upload>, tick: &mut Tick) -> Result<String> {
        let fields = fields.to_vec();
        let data = self.json("/release_task", tick, move |agent, url, auth| {
            let mut form = Form::new();
            for (name, value) in &fields {
                form = form.text(name, value);
            }
            for upload in &uploads {
                let part =
                    Part::bytes(&upload.wav).file_name(&format!("{}.wav", upload.field)).mime_str("audio/wav")?;
                form = form.part(upload.field, part);
            }
            with_auth(agent.post(url), auth).send(form)
        })?;
        reply::task_id(&data).map_err(|what| self.malformed(&what))
    }

    /// `POST /query_result` for one job.
    pub fn query(&self, task_id: &str, tick: &mut Tick) -> Result<JobState> {
        let body = json!({ "task_id_list": [task_id] });
        let data = self
            .json("/query_result", tick, move |agent, url, auth| with_auth(agent.post(url), auth).send_json(&body))?;
        reply::job_state(&data, task_id).map_err(|what| self.malformed(&what))
    }

    /// Downloads a finished job's `file` (a path on the server such as `/v1/audio?path=…`, or a full URL on the
    /// same server).
    pub fn download(&self, file: &str, tick: &mut Tick) -> Result<Vec<u8>> {
        let path = file.strip_prefix(&self.server.url).unwrap_or(file);
        if path.contains("://") {
            return Err(self.malformed(&format!("a result on another server (`{}`)", reply::quote(file))));
        }
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let exchange = self.exchange(&path, tick, |agent, url, auth| {
            let mut response = with_auth(agent.get(url), auth).call()?;
            let status = response.status().as_u16();
            let body = response.body_mut().with_config().limit(MAX_DOWNLOAD_BYTES).read_to_vec()?;
            Ok(Exchange { status, body })
        })?;
        match exchange.status {
            200 => Ok(exchange.body),
            status => Err(self.refused(&path, status, &String::from_utf8_lossy(&exchange.body))),
        }
    }

    /// `POST /v1/cancel` (`retake serve`); the official server has none (404) and simply stops being polled. Waits
    /// at most [`CANCEL_WAIT`] for the answer, which it ignores.
    pub fn cancel(&self, task_id: &str) {
        let (agent, url, auth) = (self.agent.clone(), format!("{}/v1/cancel", self.server.url), self.auth());
        let body = json!({ "task_id": task_id });
        let (done, finished) = channel::bounded(1);
        let sent = std::thread::Builder::new().name("retake-remote-cancel".into()).spawn(move || {
            let _ = with_auth(agent.post(&url), auth.as_deref()).send_json(&body);
            let _ = done.send(());
        });
        if sent.is_ok() {
            let _ = finished.recv_timeout(CANCEL_WAIT);
        }
    }

    /// A JSON exchange with `path`: the envelope's `data` of a 200 reply; 429 retried after [`BUSY_PAUSES`].
    fn json(
        &self,
        path: &str,
        tick: &mut Tick,
        send: impl Fn(&Agent, &str, Option<&str>) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>
            + Send
            + Sync
            + 'static,
    ) -> Result<Value> {
        let send = std::sync::Arc::new(send);
        let mut pauses = BUSY_PAUSES.iter();
        loop {
            let send = send.clone();
            let exchange = self.exchange(path, tick, move |agent, url, auth| {
                let mut response = send(agent, url, auth)?;
                let status = response.status().as_u16();
                let body = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_string()?;
                Ok(Exchange { status, body })
            })?;
            match (exchange.status, pauses.next()) {
                (200, _) => return reply::envelope_data(&exchange.body).map_err(|what| self.malformed(&what)),
                (429, Some(&pause)) => wait(pause, tick)?,
                (429, None) => {
                    return Err(EngineError::Remote(format!(
                        "the server {} stayed busy (its queue is full, HTTP 429) through {} tries over {} s; try again \
                         when its other jobs are done",
                        self.server.url,
                        BUSY_PAUSES.len() + 1,
                        BUSY_PAUSES.iter().map(Duration::as_secs).sum::<u64>()
                    )))
                }
                (status, _) => return Err(self.refused(path, status, &exchange.body)),
            }
        }
    }

    /// Runs one HTTP exchange with `path` on its own thread, asking `tick` every [`TICK`] while it lasts; a
    /// transport failure becomes a message naming the server.
    fn exchange<B: Send + 'static>(
        &self,
        path: &str,
        tick: &mut Tick,
        call: impl FnOnce(&Agent, &str, Option<&str>) -> std::result::Result<Exchange<B>, ureq::Error> + Send + 'static,
    ) -> Result<Exchange<B>> {
        let (agent, url, auth) = (self.agent.clone(), format!("{}{path}", self.server.url), self.auth());
        let (done, result) = channel::bounded(1);
        std::thread::Builder::new()
            .name("retake-remote".into())
            .spawn(move || {
                let _ = done.send(call(&agent, &url, auth.as_deref()));
            })
            .map_err(|e| EngineError::Remote(format!("cannot start a thread for the server request: {e}")))?;
        loop {
            match result.recv_timeout(TICK) {
                Ok(outcome) => return outcome.map_err(|e| self.unreachable(path, e)),
                Err(RecvTimeoutError::Timeout) => tick()?,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::Remote(format!(
                        "the request to {}{path} ended without an answer (its thread stopped)",
                        self.server.url
                    )))
                }
            }
        }
    }

    fn auth(&self) -> Option<String> {
        self.server.api_key.as_ref().map(|key| format!("Bearer {key}"))
    }

    /// A reply without the API's shape.
    pub fn malformed(&self, what: &str) -> EngineError {
        EngineError::Remote(format!(
            "the server {} sent {what}; is that address an ACE-Step 1.5 API server (`retake serve` or \
             acestep.api_server), and is any proxy in front of it passing the API through?",
            self.server.url
        ))
    }

    /// An HTTP refusal of a request to `path`.
    fn refused(&self, path: &str, status: u16, body: &str) -> EngineError {
        let url = &self.server.url;
        let detail = reply::detail(body);
        EngineError::Remote(match status {
            401 | 403 if self.server.api_key.is_none() => format!(
                "the server {url} needs an API key (HTTP {status}: {detail}); set the key it was started with (--api-key \
                 or ACESTEP_API_KEY for the CLI, api_key in the plugin's settings)"
            ),
            401 | 403 => format!(
                "the server {url} refused the API key (HTTP {status}: {detail}); set the key it was started with \
                 (--api-key or ACESTEP_API_KEY for the CLI, api_key in the plugin's settings)"
            ),
            404 => format!(
                "the server {url} has no {path} (HTTP 404: {detail}); is that address an ACE-Step 1.5 API server \
                 (`retake serve` or acestep.api_server)?"
            ),
            500..=599 => format!(
                "the server {url} failed on {path} (HTTP {status}: {detail}); the job is lost there: see the server's \
                 log, then try again"
            ),
            _ => format!("the server {url} refused the job on {path} (HTTP {status}: {detail})"),
        })
    }

    /// A transport failure on a request to `path`.
    fn unreachable(&self, path: &str, error: ureq::Error) -> EngineError {
        let url = &self.server.url;
        let check = "is it running, and are the address and port right (the server's --host/--port)?";
        EngineError::Remote(match error {
            ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                format!("cannot reach the server {url} (connection refused); {check}")
            }
            ureq::Error::ConnectionFailed => format!("cannot connect to the server {url}; {check}"),
            ureq::Error::HostNotFound => format!("cannot find the server {url} (unknown host); check its address"),
            ureq::Error::Timeout(what) => {
                format!("the server {url} did not answer {path} in time ({what}); is it overloaded or unreachable?")
            }
            ureq::Error::BodyExceedsLimit(limit) => {
                format!(
                    "the server {url} sent more than {} MiB for {path}; that is not an ACE-Step result",
                    limit >> 20
                )
            }
            other => format!(
                "lost the connection to the server {url} during {path} ({other}); check the network and \
                              the server, then try again"
            ),
        })
    }
}

/// `request` with the `Authorization` header when there is a key.
fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

/// Waits `pause`, asking `tick` every [`TICK`].
pub fn wait(pause: Duration, tick: &mut Tick) -> Result<()> {
    let mut left = pause;
    while !left.is_zero() {
        let nap = left.min(TICK);
        std::thread::sleep(nap);
        left -= nap;
        tick()?;
    }
    Ok(())
}
