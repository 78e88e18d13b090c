//! The remote backend: a job sent to an ACE-Step 1.5 REST API server — `retake serve` on a GPU box, or the
//! official `python -m acestep.api_server` — instead of the local model, behind the same engine handle
//! (runtime/thread.rs dispatches to [`generate`] when [`EngineConfig::server`](crate::runtime::EngineConfig) is
//! set). The source is uploaded as a 48 kHz WAV, the job polled about once a second, the result downloaded,
//! aligned by time and placed exactly as a local studio repaint places its own (pipeline/generator.rs `Splice`).
//!
//! The API's facts (envelope, fields, polling, result shape, errors, auth) are those of the official server's
//! source, `acestep/api/http/*.py` at ace-step/ACE-Step-1.5 783bb36.

mod client;
mod job;
mod reply;

use std::time::Duration;

pub use job::generate;

/// Where remote jobs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteServer {
    /// Base URL, `http://host:port` or `https://…` (no trailing slash).
    pub url: String,
    /// Sent as `Authorization: Bearer KEY` when set (the server's `ACESTEP_API_KEY` / `--api-key`).
    pub api_key: Option<String>,
    /// How long a job may take from its upload to its result before the client gives up on it. `None`: scaled
    /// to the job ([`RemoteServer::deadline_for`]). The official server answers a job it does not know — after a
    /// restart, say — as "queued" forever, so a client needs a deadline of its own.
    pub deadline: Option<Duration>,
}

/// The deadline of a job when none is configured: ten minutes, plus ten seconds per second of audio at 8 steps
/// (a CPU-only server with the full model takes about that; a GPU takes a small fraction), scaled by the steps.
const DEADLINE_BASE: Duration = Duration::from_secs(600);
/// See [`DEADLINE_BASE`].
const DEADLINE_PER_AUDIO_SECOND: f64 = 10.0;

impl RemoteServer {
    /// A server at `url` (`http://` or `https://`, a host, an optional port and path); the API key is dropped
    /// when blank. Refuses anything else naming what is wrong.
    pub fn new(url: &str, api_key: Option<String>) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => {}
            _ => {
                return Err(format!(
                    "`{url}` is not a server address; give one like http://gpu-box:8001 (http:// or https://, the \
                     host, the port)"
                ))
            }
        }
        let api_key = api_key.map(|key| key.trim().to_string()).filter(|key| !key.is_empty());
        Ok(Self { url: url.to_string(), api_key, deadline: None })
    }

    /// The configured deadline, or one for `audio_s` seconds of audio at `steps` steps.
    pub fn deadline_for(&self, audio_s: f64, steps: usize) -> Duration {
        self.deadline.unwrap_or_else(|| {
            let work = DEADLINE_PER_AUDIO_SECOND * audio_s.max(0.0) * steps.max(8) as f64 / 8.0;
            DEADLINE_BASE + Duration::from_secs_f64(work.min(86_400.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_checked_and_trimmed() {
        let server = RemoteServer::new(" http://gpu-box:8001/ ", Some("  ".into())).unwrap();
        assert_eq!((server.url.as_str(), server.api_key), ("http://gpu-box:8001", None));
        let keyed = RemoteServer::new("https://studio.example/api", Some(" k ".into())).unwrap();
        assert_eq!((keyed.url.as_str(), keyed.api_key.as_deref()), ("https://studio.example/api", Some("k")));
        for bad in ["gpu-box:8001", "ftp://x", "http://", "http:///x", "http://a b"] {
            let err = RemoteServer::new(bad, None).unwrap_err();
            assert!(err.ends_with("(http:// or https://, the host, the port)"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_default_deadline_grows_with_the_audio_and_the_steps() {
        let server = RemoteServer::new("http://h", None).unwrap();
        assert_eq!(server.deadline_for(0.0, 8), Duration::from_secs(600));
        assert_eq!(server.deadline_for(30.0, 8), Duration::from_secs(900));
        assert_eq!(server.deadline_for(30.0, 4), Duration::from_secs(900), "fewer than 8 steps count as 8");
        assert_eq!(server.deadline_for(30.0, 16), Duration::from_secs(1200));
        let fixed = RemoteServer { deadline: Some(Duration::from_secs(3)), ..server };
        assert_eq!(fixed.deadline_for(600.0, 50), Duration::from_secs(3));
    }
}
