//! The two ACE-Step 1.5 REST API servers the conformance suite (tests/tests/conformance.rs) talks to, each on a
//! free port of this machine and stopped when dropped: `retake serve` on the fixture model, and the official server
//! (`python -m acestep.api_server`) started by `../shared/peers/ace-step-api/start-server.sh` (relative to the
//! workspace root; `RETAKE_ACESTEP_SERVER_SCRIPT` overrides) on the same model.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::paths::{fixture_model_dir, workspace_root};

/// Which server it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `retake serve`.
    Retake,
    /// The official ACE-Step 1.5 server.
    Official,
}

/// A running server.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its process id (the Python process of the official server).
    pub pid: u32,
    /// `retake serve`'s process (the official one is detached by its script).
    child: Option<Child>,
    /// The official server's work folder (source, checkpoints, log), removed after it stops.
    _work: Option<tempfile::TempDir>,
    /// Where its log goes.
    pub log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// The `retake` binary: `RETAKE_BIN`, else the one beside this test's build (`cargo test --workspace` and
/// `cargo build -p retake-engine` make it).
pub fn retake_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RETAKE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/retake
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("a cargo target folder").join("retake");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p retake-engine --bin retake` (or set RETAKE_BIN)",
        bin.display()
    );
    bin
}

/// The official server's start script.
pub fn official_script() -> PathBuf {
    std::env::var_os("RETAKE_ACESTEP_SERVER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/peers/ace-step-api/start-server.sh"))
}

impl Server {
    /// `retake serve --model tests/fixtures/tiny-acestep --port 0` with `args` added (e.g. `--api-key K`,
    /// `--queue 1`); returns once it prints the address it listens on.
    pub fn retake(args: &[&str]) -> Server {
        let log_dir = tempfile::tempdir().expect("a temp folder");
        let log = log_dir.path().join("serve.log");
        let mut child = Command::new(retake_bin())
            .arg("serve")
            .arg("--model")
            .arg(fixture_model_dir())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("ACESTEP_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("retake serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("listening on ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let pid = child.id();
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("retake serve printed no address within 60 s; log:\n{}", read(&log))
            }
        };
        Server { kind: Kind::Retake, base, pid, child: Some(child), _work: None, log, _log_dir: log_dir }
    }

    /// The official server on a free port, with `ACESTEP_API_KEY` set when `api_key` is given. The first start
    /// creates its Python environment (~8 GB, minutes; kept in ~/.cache/retake-peers).
    pub fn official(api_key: Option<&str>) -> Server {
        let script = official_script();
        assert!(
            script.is_file(),
            "the official server's start script {} is missing: the conformance suite runs the official ACE-Step 1.5 \
             server from the shared peers folder beside the repository (set RETAKE_ACESTEP_SERVER_SCRIPT)",
            script.display()
        );
        let port = free_port();
        let work = tempfile::tempdir().expect("a temp folder");
        let log_dir = tempfile::tempdir().expect("a temp folder");
        let log = work.path().join("server.log");
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .arg(fixture_model_dir())
            .current_dir(workspace_root())
            .env("PORT", port.to_string())
            .env("RETAKE_PEER_WORK", work.path())
            .env_remove("ACESTEP_API_KEY")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(log_dir.path().join("start.log")).expect("the log file"));
        if let Some(key) = api_key {
            command.env("ACESTEP_API_KEY", key);
        }
        let output = command.output().expect("bash runs the start script");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = stdout.split_whitespace().collect();
        let (Some(pid), Some(base)) = (fields.first().and_then(|p| p.parse().ok()), fields.get(2)) else {
            panic!(
                "start-server.sh did not start the official server (exit {:?}, stdout `{stdout}`); its log:\n{}\n{}",
                output.status.code(),
                read(&log_dir.path().join("start.log")),
                read(&log)
            )
        };
        Server {
            kind: Kind::Official,
            base: (*base).to_owned(),
            pid,
            child: None,
            _work: Some(work),
            log,
            _log_dir: log_dir,
        }
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
    }

    /// Waits up to `limit` for `retake serve` to exit by itself; its exit code, or `None` when it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self.child {
            Some(_) => {
                // Two SIGTERMs (the second cancels a running job) let it remove its results folder; SIGKILL only
                // if it is still there after that.
                for _ in 0..2 {
                    let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
                    std::thread::sleep(Duration::from_millis(100));
                }
                if self.wait_exit(Duration::from_secs(10)).is_none() {
                    let child = self.child.as_mut().expect("checked above");
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            None => {
                let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
                // Its work folder goes next: give it a moment to close its files.
                for _ in 0..50 {
                    if !PathBuf::from(format!("/proc/{}", self.pid)).exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if PathBuf::from(format!("/proc/{}", self.pid)).exists() {
                    let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
                }
            }
        }
    }
}

/// A port no one listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}
