//! The remote backend end to end: `retake repaint|text2music --server URL` against the two real ACE-Step 1.5 API
//! servers (tests/src/servers.rs): `retake serve` on the fixture model, and the official server. A spliced repaint
//! keeps every sample outside its region and crossfade bit for bit and regenerates the inside; a server that is
//! down, a wrong or missing key, a server that dies mid-job, a job past its deadline and Ctrl-C mid-job each end
//! the run with a message naming the server (or exit 130), promptly, without an output file.
//!
//! The official server's checks are one `#[ignore]`d test (they need the shared peers folder and its Python
//! environment, as tests/tests/conformance.rs's do); scripts/test.sh runs it with `--ignored`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use retake_engine::audio::{read_wav, write_wav, Audio, WavFormat};
use retake_tests::servers::{retake_bin, Server};

const KEY: &str = "remote-key";
/// The crossfade `retake repaint` puts outside its region by default (100 ms at 48 kHz).
const FADE: usize = 4_800;

/// `retake ARGS` with nothing from the environment choosing the server, key or model.
fn retake_command(args: &[&str]) -> Command {
    let mut command = Command::new(retake_bin());
    command.args(args);
    for name in ["RETAKE_SERVER", "ACESTEP_API_KEY", "RETAKE_MODEL_DIR", "RETAKE_VARIANT"] {
        command.env_remove(name);
    }
    command
}

fn retake(args: &[&str]) -> Output {
    retake_command(args).output().expect("the retake binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A 24-bit 48 kHz stereo WAV of `seconds` of chords, different in each channel.
fn write_music(path: &Path, seconds: f64) {
    let frames = (seconds * 48_000.0).round() as usize;
    let channel = |c: usize| {
        (0..frames)
            .map(|i| {
                let t = i as f64 / 48_000.0;
                let hz = [220.0, 277.2, 329.6].map(|f| f * (1.0 + c as f64 * 0.5));
                (hz.iter().map(|f| (std::f64::consts::TAU * f * t).sin()).sum::<f64>() * 0.25) as f32
            })
            .collect()
    };
    write_wav(path, &Audio::new(48_000, (0..2).map(channel).collect()), WavFormat::Int24).unwrap();
}

/// The WAV file's samples, planar (24-bit codes scaled exactly: equal samples are equal codes).
fn read_samples(path: &Path) -> Vec<Vec<f32>> {
    read_wav(path).unwrap().channels
}

/// `retake repaint` of a 6 s clip over 2..3.5 s on `base` (with `extra` flags) keeps every sample outside the
/// region and its crossfade bit for bit and changes most of the inside.
fn repaint_keeps_the_outside(base: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 6.0);
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    let args = [&["repaint", "--input", i, "--output", o, "--start", "2", "--end", "3.5"][..], &["--server", base]];
    let run = retake(&[&args.concat()[..], &["--seed", "7", "--prompt", "lo-fi"], extra].concat());
    assert!(run.status.success(), "retake repaint --server {base} failed: {}", stderr(&run));
    let (original, result) = (read_samples(&input), read_samples(&output));
    let (start, end) = (96_000, 168_000);
    for (c, (o, r)) in original.iter().zip(&result).enumerate() {
        assert_eq!(r.len(), o.len(), "channel {c}: the result is as long as the clip");
        let outside = (0..start - FADE).chain(end + FADE..o.len());
        assert!(outside.clone().all(|p| r[p].to_bits() == o[p].to_bits()), "channel {c}: a sample outside changed");
        let changed = (start..end).filter(|&p| r[p] != o[p]).count();
        assert!(changed > (end - start) / 2, "channel {c}: only {changed} samples inside the region changed");
    }
}

/// A text2music run of `seconds` on `base` with `extra` flags, which must fail; its stderr, and how long it took.
fn failing_text2music(base: &str, seconds: &str, extra: &[&str]) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let o = output.to_str().unwrap();
    let started = Instant::now();
    let args = ["text2music", "--output", o, "--duration", seconds, "--prompt", "p", "--server", base];
    let run = retake(&[&args[..], extra].concat());
    let took = started.elapsed();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(!output.exists(), "a failed run wrote {}", output.display());
    (stderr(&run), took)
}

/// A long text2music job on `base` (with `extra` flags), its stderr read line by line.
fn long_job(base: &str, extra: &[&str], output: &Path) -> (Child, impl Iterator<Item = String>) {
    let o = output.to_str().unwrap();
    let args = ["text2music", "--output", o, "--duration", "20", "--prompt", "p", "--server", base];
    let mut child = retake_command(&[&args[..], extra].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the retake binary runs");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    (child, lines)
}

/// Ctrl-C to the running `child` ends it with 130 within a second; the rest of its stderr.
fn ctrl_c_ends_promptly(mut child: Child, lines: impl Iterator<Item = String>) -> Vec<String> {
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(1), "Ctrl-C took {:?} to end the run", sent.elapsed());
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("retake: cancelled"), "{rest:?}");
    rest
}

#[test]
fn repaint_on_retake_serve_keeps_every_sample_outside_the_region_and_crossfade() {
    let server = Server::retake(&["--api-key", KEY]);
    repaint_keeps_the_outside(&server.base, &["--api-key", KEY]);
}

#[test]
fn a_server_that_is_down_is_named_at_once() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let (err, took) = failing_text2music(&base, "5", &[]);
    assert!(err.contains(&format!("cannot reach the server {base} (connection refused); is it running")), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_wrong_or_missing_key_is_refused_naming_the_setting() {
    let server = Server::retake(&["--api-key", KEY]);
    let (wrong, _) = failing_text2music(&server.base, "5", &["--api-key", "not-the-key"]);
    let refused = format!("the server {} refused the API key (HTTP 401", server.base);
    assert!(wrong.contains(&refused), "{wrong}");
    let (missing, _) = failing_text2music(&server.base, "5", &[]);
    assert!(missing.contains(&format!("the server {} needs an API key (HTTP 401", server.base)), "{missing}");
}

#[cfg(unix)]
#[test]
fn a_server_that_dies_mid_job_ends_the_run_with_a_message() {
    let server = Server::retake(&[]);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let (mut child, mut lines) = long_job(&server.base, &["--steps", "1000"], &output);
    assert!(lines.by_ref().any(|line| line.starts_with("retake: step")), "no step was reported");
    assert!(Command::new("kill").args(["-KILL", &server.pid.to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.collect();
    assert_eq!(child.wait().unwrap().code(), Some(1), "{rest:?}");
    // The next poll finds nothing listening; a poll under way when it died finds the connection lost.
    let error = rest.last().cloned().unwrap_or_default();
    let named = [
        format!("cannot reach the server {}", server.base),
        format!("lost the connection to the server {}", server.base),
    ];
    assert!(error.starts_with("retake: error: ") && named.iter().any(|n| error.contains(n)), "{rest:?}");
    assert!(!output.exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_mid_job_ends_the_run_at_once_and_cancels_the_job_on_the_server() {
    let server = Server::retake(&[]);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let (child, mut lines) = long_job(&server.base, &["--steps", "1000"], &output);
    assert!(lines.by_ref().any(|line| line.starts_with("retake: step")), "no step was reported");
    ctrl_c_ends_promptly(child, lines);
    assert!(!output.exists());
    // The server stopped the cancelled job: a short one right after it does not wait for 1000 steps.
    let started = Instant::now();
    let next = dir.path().join("next.wav");
    let n = next.to_str().unwrap();
    let args = ["text2music", "--output", n, "--duration", "2", "--prompt", "p", "--server", &server.base];
    let run = retake(&[&args[..], &["--steps", "2"]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(started.elapsed() < Duration::from_secs(60), "the next job took {:?}", started.elapsed());
}

/// The official ACE-Step 1.5 server, one instance for all its checks (it takes minutes to start).
#[test]
#[ignore = "needs the official ACE-Step 1.5 server (../shared/peers/ace-step-api, its Python environment)"]
fn the_official_server_repaints_in_place_and_its_refusals_deadlines_and_ctrl_c_end_the_run_with_a_message() {
    let server = Server::official(Some(KEY));
    let base = server.base.as_str();
    repaint_keeps_the_outside(base, &["--api-key", KEY]);
    let (wrong, _) = failing_text2music(base, "5", &["--api-key", "not-the-key"]);
    assert!(wrong.contains(&format!("the server {base} refused the API key (HTTP 401")), "{wrong}");
    // It answers a job it does not finish in time as queued forever; the client's deadline ends the run.
    let (late, took) = failing_text2music(base, "30", &["--api-key", KEY, "--server-deadline", "0.5"]);
    assert!(late.contains(&format!("the server {base} did not finish job")), "{late}");
    assert!(late.contains("within 0.5 s"), "{late}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // It has no cancel route: Ctrl-C still ends the run at once.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let (child, mut lines) = long_job(base, &["--api-key", KEY, "--steps", "50"], &output);
    assert!(lines.by_ref().any(|line| line == "retake: encoding"), "no progress was reported");
    std::thread::sleep(Duration::from_millis(1500));
    ctrl_c_ends_promptly(child, lines);
    assert!(!output.exists());
}
