//! One conformance suite, two servers: a client written only to the ACE-Step 1.5 REST API (the official server's
//! `acestep/api_server.py` and `acestep/api/http/*`, summarised in ../shared/peers/ace-step-api/README.md) runs the
//! same checks against `retake serve` and against the official server (tests/src/servers.rs starts both on the
//! fixture model).
//!
//! Where the two differ, each server's own behaviour is asserted:
//! - an unknown task id: the official server answers status 0 with `result "[]"` forever (a client needs its own
//!   deadline); `retake serve` answers status 2 with an `error`;
//! - a field it cannot parse (`inference_steps: "many"`): the official server falls back to the default and runs
//!   the job; `retake serve` answers 400 naming the field. A `repaint_mode` outside its list: the official server
//!   answers a plain-text 500, `retake serve` 400;
//! - malformed JSON to `/query_result`: the official server answers a plain-text 500, `retake serve` 400;
//! - uploads: the official server has no size limit and takes a non-audio file (the task then fails with no
//!   message); `retake serve` answers 413 beyond `--max-upload-mb` and 400 for a file that is not audio;
//! - a full queue: the official server's queue holds 200 tasks, too many to fill in a test on the CPU, so only its
//!   size is checked there (`/v1/stats`); `retake serve --queue 1` answers 429 at the third task;
//! - cancel: the official server has no cancel route (404); `retake serve` has `POST /v1/cancel`;
//! - a repaint: `retake serve` keeps every sample outside the region bit for bit; the official server's result is
//!   checked for its shape only.
//!
//! The official server's checks are one `#[ignore]`d test: they need the shared peers folder beside the repository
//! and its Python environment (~8 GB, made once by start-server.sh); scripts/test.sh runs it with `--ignored`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use retake_engine::audio::{write_wav, Audio, AudioFile, WavFormat};
use retake_tests::servers::{Kind, Server};
use serde_json::{json, Value};

const KEY: &str = "conformance-key";
/// How long a task may take on the fixture model before the client gives up.
const TASK_DEADLINE: Duration = Duration::from_secs(180);

/// A reply: status, content type and body.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The official error shape: `{"detail": "..."}` with `status`.
    fn detail(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        self.json()["detail"].as_str().unwrap_or_else(|| panic!("no detail: {}", self.text())).to_owned()
    }
}

/// A third-party client of the API.
struct Client {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
}

impl Client {
    fn new(server: &Server, key: Option<&str>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            // A connection per request: the official server closes one after a 500 without saying so, and a
            // pooled connection reused then is reset.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build();
        Self { agent: config.into(), base: server.base.clone(), key: key.map(str::to_owned) }
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Reply {
        let mut response = response.unwrap_or_else(|e| panic!("{what}: {e}"));
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(512 << 20).read_to_vec().expect("the body");
        Reply { status, content_type, body }
    }

    fn get(&self, path: &str) -> Reply {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        Self::reply(request.call(), path)
    }

    fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        Self::reply(request.send(body), path)
    }

    fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, Some("application/json"), body.to_string().as_bytes())
    }

    /// A `multipart/form-data` body of text `fields` and one `src_audio` file.
    fn post_multipart(&self, path: &str, fields: &[(&str, &str)], file: (&str, &[u8])) -> Reply {
        let boundary = "retake-conformance-boundary-7f3a";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
            );
        }
        let (filename, bytes) = file;
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"src_audio\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(format!("\r\n--{boundary}--\r\n").bytes());
        self.post(path, Some(&format!("multipart/form-data; boundary={boundary}")), &body)
    }

    /// The task id of an accepted `/release_task` reply, checking the official envelope.
    fn accepted(reply: &Reply) -> String {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert_eq!((body["code"].as_i64(), body["error"].is_null()), (Some(200), true), "{body}");
        assert!(body["timestamp"].as_u64().is_some(), "{body}");
        assert_eq!(body["data"]["status"], "queued", "{body}");
        assert!(body["data"]["queue_position"].as_u64().is_some_and(|p| p >= 1), "{body}");
        body["data"]["task_id"].as_str().expect("a task_id").to_owned()
    }

    /// `/query_result` for one task: its status and result items (`result` is a JSON string).
    fn query(&self, task: &str) -> (i64, Vec<Value>) {
        let reply = self.post_json("/query_result", &json!({ "task_id_list": [task] }));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        let item = &body["data"][0];
        assert_eq!(item["task_id"], task, "{body}");
        let result = item["result"].as_str().unwrap_or_else(|| panic!("result is a JSON string: {body}"));
        let items: Vec<Value> = serde_json::from_str(result).unwrap_or_else(|e| panic!("{e}: {result}"));
        (item["status"].as_i64().expect("an integer status"), items)
    }

    /// Polls until the task ends (status 1 or 2) or the deadline passes; checks every progress report on the way.
    fn wait(&self, task: &str) -> (i64, Vec<Value>) {
        let deadline = Instant::now() + TASK_DEADLINE;
        loop {
            let (status, items) = self.query(task);
            if status != 0 {
                return (status, items);
            }
            if let Some(progress) = items.first().and_then(|i| i["progress"].as_f64()) {
                assert!((0.0..=1.0).contains(&progress), "progress {progress}");
            }
            assert!(Instant::now() < deadline, "task {task} still at status 0 after {TASK_DEADLINE:?}: {items:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits for success and downloads every file.
    fn results(&self, task: &str) -> Vec<(String, Vec<u8>)> {
        let (status, items) = self.wait(task);
        assert_eq!(status, 1, "task {task} failed: {items:?}");
        items
            .iter()
            .map(|item| {
                assert_eq!(
                    (item["stage"].as_str(), item["progress"].as_f64()),
                    (Some("succeeded"), Some(1.0)),
                    "{item}"
                );
                let file = item["file"].as_str().expect("a file URL").to_owned();
                assert!(file.starts_with("/v1/audio?path="), "{file}");
                let reply = self.get(&file);
                assert_eq!(reply.status, 200, "{}", reply.text());
                assert!(reply.content_type.starts_with("audio/"), "{}", reply.content_type);
                (file, reply.body)
            })
            .collect()
    }
}

/// Audio read back from downloaded bytes, checked to be 48 kHz stereo.
fn decoded(bytes: &[u8], extension: &str) -> Audio {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("result.{extension}"));
    std::fs::write(&path, bytes).unwrap();
    let file = AudioFile::open(&path).unwrap();
    assert_eq!((file.sample_rate(), file.channels()), (48_000, 2), "a 48 kHz stereo result");
    file.decode(600.0).unwrap()
}

/// `seconds` of a two-tone 48 kHz stereo signal as a 16-bit WAV file's bytes.
fn source_wav(seconds: f64) -> Vec<u8> {
    let n = (seconds * 48_000.0) as usize;
    let tone = |f: f32| (0..n).map(|i| 0.4 * (i as f32 * f * std::f32::consts::TAU / 48_000.0).sin()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.wav");
    write_wav(&path, &Audio::new(48_000, vec![tone(220.0), tone(330.0)]), WavFormat::Int16).unwrap();
    std::fs::read(path).unwrap()
}

fn assert_close(seconds: f64, expected: f64) {
    assert!((seconds - expected).abs() < 0.1, "{seconds} s, expected {expected} s");
}

/// The request fields every well-behaved client sends (README: batch_size 1, a format, a fixed seed, no LM).
fn base_fields() -> Value {
    json!({ "batch_size": 1, "audio_format": "wav", "use_random_seed": false, "seed": 7, "thinking": false })
}

fn with(mut fields: Value, extra: Value) -> Value {
    fields.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    fields
}

// ---- the scenarios, each run against both servers ----

fn health_and_model_routes(server: &Server) {
    let client = Client::new(server, None);
    let health = client.get("/health").json();
    assert_eq!((health["code"].as_i64(), health["data"]["status"].as_str()), (Some(200), Some("ok")), "{health}");
    assert_eq!(health["data"]["loaded_model"], "acestep-v15-turbo", "{health}");
    let models = client.get("/v1/models").json();
    assert_eq!(models["object"], "list", "{models}");
    assert_eq!(models["data"][0]["id"], "acestep/acestep-v15-turbo", "{models}");
    let inventory = client.get("/v1/model_inventory").json();
    assert!(
        inventory["data"]["models"].as_array().unwrap().iter().any(|m| m["name"] == "acestep-v15-turbo"),
        "{inventory}"
    );
    let stats = client.get("/v1/stats").json();
    assert_eq!(stats["data"]["queue_maxsize"], 200, "{stats}");
    assert!(
        stats["data"]["jobs"]["total"].as_u64().is_some() && stats["data"]["avg_job_seconds"].is_number(),
        "{stats}"
    );
    let unknown = client.get("/no/such/route");
    assert_eq!(unknown.detail(404), "Not Found");
}

/// text2music over JSON, the download, and `/v1/audio` refusing paths outside its folder.
fn text2music_and_download(server: &Server) {
    let client = Client::new(server, None);
    let fields =
        with(base_fields(), json!({ "prompt": "calm piano", "lyrics": "[Instrumental]", "audio_duration": 6 }));
    let task = Client::accepted(&client.post_json("/release_task", &fields));
    let results = client.results(&task);
    assert_eq!(results.len(), 1, "batch_size 1 gives one file");
    let (file, bytes) = &results[0];
    assert_close(decoded(bytes, "wav").duration_s(), 6.0);
    let (_, items) = client.query(&task);
    assert_eq!(items[0]["seed_value"], "7", "{items:?}");

    let encoded = file.strip_prefix("/v1/audio?path=").unwrap();
    let folder = decode_query(encoded);
    let folder = Path::new(&folder).parent().unwrap().display().to_string();
    for outside in ["/etc/passwd".to_owned(), format!("{folder}/../../../etc/passwd"), "../../etc/passwd".to_owned()] {
        let reply = client.get(&format!("/v1/audio?path={}", encode_query(&outside)));
        assert_eq!(reply.detail(403), "Access denied: path outside allowed directory", "{outside}");
    }
    let missing = client.get(&format!("/v1/audio?path={}", encode_query(&format!("{folder}/missing.wav"))));
    assert_eq!(missing.detail(404), "Audio file not found");
}

/// An urlencoded body with camelCase aliases and bool strings, FLAC out.
fn urlencoded_aliases_and_flac(server: &Server) {
    let client = Client::new(server, None);
    let body =
        "caption=lofi+beat&audioDuration=6&batch_size=1&audio_format=flac&useRandomSeed=false&seed=3&thinking=off";
    let task =
        Client::accepted(&client.post("/release_task", Some("application/x-www-form-urlencoded"), body.as_bytes()));
    let results = client.results(&task);
    assert_close(decoded(&results[0].1, "flac").duration_s(), 6.0);
    let (_, items) = client.query(&task);
    assert_eq!(items[0]["seed_value"], "3", "useRandomSeed=false and seed were read: {items:?}");
}

fn cover_with_upload(server: &Server) {
    let client = Client::new(server, None);
    let source = source_wav(6.0);
    let reply = client.post_multipart(
        "/release_task",
        &[
            ("task_type", "cover"),
            ("prompt", "jazz"),
            ("batch_size", "1"),
            ("audio_format", "wav"),
            ("use_random_seed", "false"),
            ("seed", "11"),
        ],
        ("source.wav", &source),
    );
    let task = Client::accepted(&reply);
    let results = client.results(&task);
    assert_close(decoded(&results[0].1, "wav").duration_s(), 6.0);
}

fn repaint_with_upload(server: &Server) {
    let client = Client::new(server, None);
    let bytes = source_wav(6.0);
    let reply = client.post_multipart(
        "/release_task",
        &[
            ("task_type", "repaint"),
            ("prompt", "drums"),
            ("repainting_start", "2"),
            ("repainting_end", "4"),
            ("repaint_mode", "aggressive"),
            ("batch_size", "1"),
            ("audio_format", "wav"),
            ("use_random_seed", "false"),
            ("seed", "5"),
        ],
        ("source.wav", &bytes),
    );
    let task = Client::accepted(&reply);
    let result = decoded(&client.results(&task)[0].1, "wav");
    assert_close(result.duration_s(), 6.0);
    if server.kind == Kind::Retake {
        let source = decoded(&bytes, "wav");
        assert_eq!(result.len(), source.len());
        let (start, end) = (2 * 48_000, 4 * 48_000);
        for (kept, original) in result.channels.iter().zip(&source.channels) {
            assert!(kept[..start] == original[..start], "samples before the region kept bit for bit");
            assert!(kept[end..] == original[end..], "samples after the region kept bit for bit");
            assert!(kept[start..end] != original[start..end], "the region is regenerated");
        }
    }
}

/// The key rules, on a server started with [`KEY`].
fn auth_with_a_key(server: &Server) {
    let anonymous = Client::new(server, None);
    let wrong = Client::new(server, Some("not-the-key"));
    let right = Client::new(server, Some(KEY));
    let fields = with(base_fields(), json!({ "prompt": "keyed", "audio_duration": 6 }));
    assert_eq!(anonymous.post_json("/release_task", &fields).detail(401), "Missing ai_token or Authorization header");
    assert_eq!(wrong.post_json("/release_task", &fields).detail(401), "Invalid API key");
    let bad_token = with(fields.clone(), json!({ "ai_token": "nope" }));
    assert_eq!(anonymous.post_json("/release_task", &bad_token).detail(401), "Invalid ai_token");
    let task = Client::accepted(&right.post_json("/release_task", &fields));
    let by_token = anonymous.post_json("/query_result", &json!({ "task_id_list": [task], "ai_token": KEY }));
    assert_eq!(by_token.status, 200, "ai_token in the body: {}", by_token.text());
    assert_eq!(anonymous.post_json("/query_result", &json!({ "task_id_list": [task] })).status, 401);
    let (file, _) = right.results(&task).remove(0);
    assert_eq!(anonymous.get(&file).detail(401), "Missing Authorization header");
    assert_eq!(wrong.get(&file).detail(401), "Invalid API key");
    assert_eq!(anonymous.get("/v1/stats").status, 401);
    assert_eq!(anonymous.get("/health").status, 200, "/health stays open");
    assert_eq!(anonymous.get("/v1/models").status, 200, "/v1/models stays open");
}

fn unknown_task_id(server: &Server) {
    let client = Client::new(server, None);
    let (status, items) = client.query("00000000-0000-0000-0000-000000000000");
    match server.kind {
        Kind::Official => assert_eq!((status, items.len()), (0, 0), "the official server: status 0 and \"[]\""),
        Kind::Retake => {
            assert_eq!(status, 2);
            assert!(items[0]["error"].as_str().unwrap().contains("unknown task_id"), "{items:?}");
        }
    }
}

fn bad_fields(server: &Server) {
    let client = Client::new(server, None);
    let steps = client
        .post_json("/release_task", &with(base_fields(), json!({ "inference_steps": "many", "audio_duration": 6 })));
    let mode =
        client.post_json("/release_task", &json!({ "task_type": "repaint", "repaint_mode": "wild", "batch_size": 1 }));
    match server.kind {
        Kind::Official => {
            // Falls back to 8 steps; a value outside repaint_mode's list fails its request model: a plain-text 500.
            let task = Client::accepted(&steps);
            assert_eq!(client.wait(&task).0, 1);
            assert_eq!((mode.status, mode.text().as_str()), (500, "Internal Server Error"));
        }
        Kind::Retake => {
            assert!(steps.detail(400).contains("inference_steps is `many`, which is not a whole number"));
            assert!(mode.detail(400).contains("repaint_mode is `wild`; send conservative, balanced or aggressive"));
            let mp3 = client.post_json("/release_task", &with(base_fields(), json!({ "audio_format": "mp3" })));
            assert!(mp3.detail(400).contains("ask for wav (16-bit), wav32 (32-bit float) or flac"));
            let lego = Client::accepted(
                &client.post_json("/release_task", &with(base_fields(), json!({ "task_type": "lego" }))),
            );
            let (status, items) = client.query(&lego);
            assert_eq!(status, 2);
            assert!(items[0]["error"].as_str().unwrap().contains("task_type `lego` is not available"), "{items:?}");
        }
    }
}

fn malformed_bodies(server: &Server) {
    let client = Client::new(server, None);
    let broken = client.post("/release_task", Some("application/json"), b"{\"prompt\": ");
    assert_eq!(broken.detail(400), "Malformed JSON payload");
    let plain = client.post("/release_task", Some("text/plain"), b"hello");
    assert_eq!(
        plain.detail(415),
        "Unsupported Content-Type: text/plain; use application/json, application/x-www-form-urlencoded, or \
         multipart/form-data"
    );
    let query = client.post("/query_result", Some("application/json"), b"{bad");
    match server.kind {
        Kind::Official => assert_eq!((query.status, query.text().as_str()), (500, "Internal Server Error")),
        Kind::Retake => assert_eq!(query.detail(400), "Malformed JSON payload"),
    }
}

fn non_audio_upload(server: &Server) {
    let client = Client::new(server, None);
    let reply = client.post_multipart(
        "/release_task",
        &[("task_type", "cover"), ("batch_size", "1"), ("audio_format", "wav")],
        ("notes.wav", b"these are not samples"),
    );
    match server.kind {
        // Taken, then failed without a message.
        Kind::Official => assert_eq!(client.wait(&Client::accepted(&reply)).0, 2),
        Kind::Retake => {
            assert!(reply.detail(400).contains("the uploaded file `notes.wav` is not audio"), "{}", reply.text())
        }
    }
}

fn cancel_route(server: &Server) {
    let client = Client::new(server, None);
    match server.kind {
        Kind::Official => {
            assert_eq!(client.post_json("/v1/cancel", &json!({ "task_id": "x" })).detail(404), "Not Found")
        }
        Kind::Retake => {
            let long = with(base_fields(), json!({ "audio_duration": 40, "inference_steps": 200 }));
            let task = Client::accepted(&client.post_json("/release_task", &long));
            let deadline = Instant::now() + TASK_DEADLINE;
            while client.query(&task).1[0]["stage"].as_str().is_none_or(|s| !s.starts_with("diffusion")) {
                assert!(Instant::now() < deadline, "the task never started");
                std::thread::sleep(Duration::from_millis(100));
            }
            let asked = Instant::now();
            assert_eq!(client.post_json("/v1/cancel", &json!({ "task_id": task })).status, 200);
            let (status, items) = client.wait(&task);
            assert_eq!((status, items[0]["stage"].as_str()), (2, Some("cancelled")), "{items:?}");
            assert!(items[0]["error"].as_str().unwrap().contains("cancelled"), "{items:?}");
            assert!(asked.elapsed() < Duration::from_secs(10), "cancelled within a step");
            let again = client.post_json("/v1/cancel", &json!({ "task_id": task }));
            assert!(again.detail(409).contains("has already ended"));
            assert!(client
                .post_json("/v1/cancel", &json!({ "task_id": "nope" }))
                .detail(404)
                .contains("unknown task_id"));
        }
    }
}

/// The official `urllib.parse.quote(path, safe="")` form of a query value.
fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode_query(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).expect("a %XX escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

// ---- retake serve ----

#[test]
fn retake_health_and_model_routes() {
    health_and_model_routes(&Server::retake(&[]));
}

#[test]
fn retake_text2music_and_download() {
    text2music_and_download(&Server::retake(&[]));
}

#[test]
fn retake_urlencoded_aliases_and_flac() {
    urlencoded_aliases_and_flac(&Server::retake(&[]));
}

#[test]
fn retake_cover_with_upload() {
    cover_with_upload(&Server::retake(&[]));
}

#[test]
fn retake_repaint_with_upload_keeps_the_outside_bit_for_bit() {
    repaint_with_upload(&Server::retake(&[]));
}

#[test]
fn retake_auth_with_a_key() {
    auth_with_a_key(&Server::retake(&["--api-key", KEY]));
}

#[test]
fn retake_unknown_task_id_fails_with_a_message() {
    unknown_task_id(&Server::retake(&[]));
}

#[test]
fn retake_bad_fields_are_refused_naming_the_field() {
    bad_fields(&Server::retake(&[]));
}

#[test]
fn retake_malformed_bodies() {
    malformed_bodies(&Server::retake(&[]));
}

#[test]
fn retake_non_audio_upload_is_refused() {
    non_audio_upload(&Server::retake(&[]));
}

#[test]
fn retake_cancel_stops_a_running_task() {
    cancel_route(&Server::retake(&[]));
}

#[test]
fn retake_huge_upload_is_refused_with_413() {
    let server = Server::retake(&["--max-upload-mb", "1"]);
    let client = Client::new(&server, None);
    let big = source_wav(6.0);
    assert!(big.len() > 1 << 20);
    let reply = client.post_multipart("/release_task", &[("task_type", "cover")], ("big.wav", &big));
    assert!(reply.detail(413).contains("upload limit of 1 MiB"), "{}", reply.text());
    // The server goes on serving.
    let task =
        Client::accepted(&client.post_json("/release_task", &with(base_fields(), json!({ "audio_duration": 6 }))));
    assert_eq!(client.wait(&task).0, 1);
}

#[test]
fn retake_full_queue_answers_429() {
    let server = Server::retake(&["--queue", "1"]);
    let client = Client::new(&server, None);
    let long = with(base_fields(), json!({ "audio_duration": 40, "inference_steps": 200 }));
    let first = Client::accepted(&client.post_json("/release_task", &long));
    let second = Client::accepted(&client.post_json("/release_task", &long));
    let third = client.post_json("/release_task", &long);
    assert_eq!(third.detail(429), "Server busy: queue is full");
    let stats = client.get("/v1/stats").json();
    assert_eq!((stats["data"]["queue_maxsize"].as_u64(), stats["data"]["jobs"]["total"].as_u64()), (Some(1), Some(2)));
    for task in [first, second] {
        assert_eq!(client.post_json("/v1/cancel", &json!({ "task_id": task })).status, 200);
    }
}

#[test]
fn retake_results_expire_after_keep_results() {
    let server = Server::retake(&["--keep-results", "1s"]);
    let client = Client::new(&server, None);
    let task =
        Client::accepted(&client.post_json("/release_task", &with(base_fields(), json!({ "audio_duration": 6 }))));
    let (file, _) = client.results(&task).remove(0);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(client.get(&file).detail(404), "Audio file not found");
    let (status, items) = client.query(&task);
    assert_eq!(status, 2);
    assert!(items[0]["error"].as_str().unwrap().contains("expired"), "{items:?}");
}

#[test]
fn retake_shutdown_finishes_the_running_task_and_fails_the_waiting_one() {
    let mut server = Server::retake(&[]);
    let client = Client::new(&server, None);
    let running = Client::accepted(
        &client
            .post_json("/release_task", &with(base_fields(), json!({ "audio_duration": 40, "inference_steps": 100 }))),
    );
    let waiting =
        Client::accepted(&client.post_json("/release_task", &with(base_fields(), json!({ "audio_duration": 6 }))));
    let deadline = Instant::now() + TASK_DEADLINE;
    while client.query(&running).1[0]["stage"].as_str().is_none_or(|s| !s.starts_with("diffusion")) {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    let (status, items) = client.query(&waiting);
    assert_eq!(status, 2, "{items:?}");
    assert!(items[0]["error"].as_str().unwrap().contains("shut down before this task ran"), "{items:?}");
    let refused = client.post_json("/release_task", &base_fields());
    assert!(refused.detail(503).contains("shutting down"));
    // The running task finishes and its result can be fetched; then the server exits cleanly by itself.
    let results = client.results(&running);
    assert_close(decoded(&results[0].1, "wav").duration_s(), 40.0);
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0), "log:\n{}", server.log_text());
}

// ---- the official server ----

#[test]
#[ignore = "needs the official server's Python environment (~8 GB, made once by start-server.sh); scripts/test.sh runs it"]
fn official_server_passes_the_same_checks() {
    let open = Server::official(None);
    let keyed = Server::official(Some(KEY));
    let scenarios: [(&str, &dyn Fn()); 12] = [
        ("health and model routes", &|| health_and_model_routes(&open)),
        ("text2music and download", &|| text2music_and_download(&open)),
        ("urlencoded aliases and flac", &|| urlencoded_aliases_and_flac(&open)),
        ("cover with upload", &|| cover_with_upload(&open)),
        ("repaint with upload", &|| repaint_with_upload(&open)),
        ("auth with a key", &|| auth_with_a_key(&keyed)),
        ("unknown task id", &|| unknown_task_id(&open)),
        ("bad fields", &|| bad_fields(&open)),
        ("malformed bodies", &|| malformed_bodies(&open)),
        ("non-audio upload", &|| non_audio_upload(&open)),
        ("cancel route", &|| cancel_route(&open)),
        ("huge upload (no limit)", &|| {
            let client = Client::new(&open, None);
            let big = source_wav(12.0);
            let fields = [("task_type", "cover"), ("batch_size", "1"), ("audio_format", "wav")];
            let task = Client::accepted(&client.post_multipart("/release_task", &fields, ("big.wav", &big)));
            assert_eq!(client.wait(&task).0, 1);
        }),
    ];
    let failed: Vec<String> = scenarios
        .iter()
        .filter_map(|(name, scenario)| {
            catch_unwind(AssertUnwindSafe(scenario)).err().map(|panic| {
                let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                format!("{name}: {message}")
            })
        })
        .collect();
    assert!(failed.is_empty(), "the official server failed:\n{}\nlog: {}", failed.join("\n"), open.log.display());
}
