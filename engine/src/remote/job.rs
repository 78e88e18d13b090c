//! A [`GenerationRequest`] run on a server: the official fields it maps to, the upload, polling with progress and
//! a deadline, the download, and the result placed on the request's timeline exactly as the local studio pipeline
//! places its own (pipeline/generator.rs: the same padding, crop and `Splice`).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::client::{wait, Client, Upload};
use super::reply::JobState;
use super::RemoteServer;
use crate::audio::{check_finite, resample, to_stereo, write_wav, Audio, AudioFile, WavFormat, MODEL_SAMPLE_RATE};
use crate::error::{EngineError, Result};
use crate::model::audio_tokenizer::parse_audio_codes;
use crate::pipeline::masks::FrameGrid;
use crate::pipeline::request::{GenerationRequest, Mode, Progress, ProgressFn, Task, MAX_DURATION_S};
use crate::pipeline::{checked_source, pad_audio, studio_padding, Splice};

/// The official server's latent grid: 48 kHz, `// 1920` samples per frame (acestep/core/generation/handler/
/// conditioning_target.py). Uploads are padded to whole frames so the server's decode covers every sample.
const GRID: FrameGrid = FrameGrid { sample_rate: MODEL_SAMPLE_RATE, hop: 1920 };
/// Samples per LM audio code (5 codes a second).
const SAMPLES_PER_CODE: usize = 5 * 1920;
/// How often a running job is polled.
const POLL: Duration = Duration::from_secs(1);
/// Polls in a row in which the server holds no record of the job before it counts as lost.
const LOST_POLLS: u32 = 3;
/// The longest result read back: the longest job plus the server's padding to its minimum length.
const MAX_RESULT_S: f64 = MAX_DURATION_S + 30.0;

/// What is sent and how the result is placed.
struct Plan {
    /// The official `/release_task` fields.
    fields: Vec<(String, String)>,
    /// `src_audio`: the source padded as the job needs it, to whole frames.
    source: Option<Audio>,
    /// The result's length in samples (the server may return a longer clip: at least 5.12 s).
    length: usize,
    /// A studio repaint's original samples, put back around its regions.
    splice: Option<Splice>,
}

/// Runs `request` on `server`, reporting the upload as [`Progress::Encoding`], the server's progress as steps of
/// the request's schedule and the download as [`Progress::Decoding`]; `progress` may cancel at any of its calls,
/// which come at least every 100 ms. The result is 48 kHz stereo, as long as the local pipeline's would be.
pub fn generate(server: &RemoteServer, request: &GenerationRequest, progress: &mut ProgressFn) -> Result<Audio> {
    request.check_limits()?;
    let plan = plan(request)?;
    let client = Client::new(server);
    let mut reporter = Reporter { progress, last: Progress::Encoding };
    reporter.report(Progress::Encoding)?;
    client.health(&mut || reporter.tick())?;
    let mut uploads = Vec::new();
    if let Some(source) = &plan.source {
        uploads.push(Upload { field: "src_audio", wav: wav_bytes(source)? });
    }
    if let Some(reference) = request.references.first() {
        uploads.push(Upload { field: "reference_audio", wav: wav_bytes(reference)? });
    }
    let task = client.release_task(&plan.fields, uploads, &mut || reporter.tick())?;
    let deadline = server.deadline_for(plan.length as f64 / GRID.sample_rate as f64, request.steps);
    let file = match follow(&client, &task, request.steps, deadline, &mut reporter) {
        Ok(file) => file,
        Err(e) => {
            // A cancelled job, or one given up on, should not keep the server busy (`retake serve` stops it).
            client.cancel(&task);
            return Err(e);
        }
    };
    reporter.report(Progress::Decoding { tile: 0, tiles: 1 })?;
    let bytes = client.download(&file, &mut || reporter.tick())?;
    let result = read_result(&bytes).map_err(|what| client.malformed(&what))?;
    let placed = place(result, &plan).map_err(|what| client.malformed(&what))?;
    reporter.report(Progress::Decoding { tile: 1, tiles: 1 })?;
    Ok(placed)
}

/// Polls job `task` about once a second until it ends or `deadline` passes; its result's download path.
fn follow(client: &Client, task: &str, steps: usize, deadline: Duration, reporter: &mut Reporter) -> Result<String> {
    let started = Instant::now();
    let (mut unknown, mut reported) = (0, 0);
    loop {
        match client.query(task, &mut || reporter.tick())? {
            JobState::Done { file } => {
                if reported < steps {
                    reporter.report(Progress::Step { k: steps, n: steps })?;
                }
                return Ok(file);
            }
            JobState::Failed { error } => {
                let why = match error {
                    Some(error) => format!(": {error}"),
                    None => " without a reason (the official server gives none); see the server's log".into(),
                };
                return Err(EngineError::Remote(format!("the server {} failed the job{why}", client.url())));
            }
            JobState::Waiting { known: false, .. } => {
                unknown += 1;
                if unknown >= LOST_POLLS {
                    return Err(EngineError::Remote(format!(
                        "the server {} no longer knows job {task} (was it restarted?); run the job again",
                        client.url()
                    )));
                }
            }
            JobState::Waiting { progress, .. } => {
                unknown = 0;
                let done = (progress.unwrap_or(0.0).clamp(0.0, 1.0) * steps as f64).floor() as usize;
                if done > reported {
                    reported = done;
                    reporter.report(Progress::Step { k: done, n: steps })?;
                }
            }
        }
        if started.elapsed() >= deadline {
            return Err(EngineError::Remote(format!(
                "the server {} did not finish job {task} within {:.1} s; it may be stuck or overloaded (the job was \
                 cancelled where the server can cancel)",
                client.url(),
                deadline.as_secs_f64()
            )));
        }
        wait(POLL, &mut || reporter.tick())?;
    }
}

/// The official fields of `request`, its upload, and how its result is placed.
fn plan(request: &GenerationRequest) -> Result<Plan> {
    if request.mode == Mode::Reference {
        return Err(EngineError::invalid(
            "reference mode (DiffSynth semantics) runs only on this machine's engine; a server runs studio mode, so \
             drop --mode reference or the server",
        ));
    }
    if request.references.len() > 1 {
        return Err(EngineError::invalid(format!(
            "a server takes one timbre reference, not {}; pass only one",
            request.references.len()
        )));
    }
    let mut fields = common_fields(request);
    let mut field = |name: &str, value: String| fields.push((name.to_string(), value));
    let (source, length, splice) = match &request.task {
        Task::Text2Music { duration_s } => {
            field("task_type", "text2music".into());
            field("audio_duration", duration_s.to_string());
            (None, (duration_s * GRID.sample_rate as f64).round() as usize, None)
        }
        Task::Cover { cover_strength, noise_strength, audio_codes } => {
            field("task_type", "cover".into());
            field("audio_cover_strength", cover_strength.to_string());
            field("cover_noise_strength", noise_strength.to_string());
            match audio_codes {
                Some(codes) => {
                    field("audio_code_string", codes.clone());
                    (None, parse_audio_codes(codes, u32::MAX).len() * SAMPLES_PER_CODE, None)
                }
                None => {
                    let source = checked_source(request, GRID.hop)?;
                    let length = source.len();
                    (Some(whole_frames(source)), length, None)
                }
            }
        }
        Task::Repaint { ranges, strength, splice_crossfade_ms } => {
            let source = checked_source(request, GRID.hop)?;
            // The local pipeline's padding: zeros before a start below 0 s and after an end past the clip, the
            // ranges moved onto the padded timeline (whose earliest start is then at or after 0 s).
            let padding = studio_padding(ranges, source.len(), source.duration_s(), GRID)?;
            let padded = pad_audio(&source, padding.left, padding.right);
            // The official API repaints one range: the span from the first start to the last end; the original
            // samples between several ranges come back through the splice.
            let start = padding.ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
            let end = padding.ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
            field("task_type", "repaint".into());
            field("repainting_start", start.to_string());
            field("repainting_end", end.to_string());
            field("repaint_mode", "balanced".into());
            field("repaint_strength", strength.to_string());
            let splice = splice_crossfade_ms.map(|ms| Splice::studio(padded.clone(), &padding, ms));
            let length = padded.len();
            (Some(whole_frames(padded)), length, splice)
        }
    };
    Ok(Plan { fields, source, length, splice })
}

/// The fields every task sends: one result as a WAV, the request's own seed, no LM, and the sampling settings.
fn common_fields(request: &GenerationRequest) -> Vec<(String, String)> {
    let mut fields: Vec<(&str, String)> = vec![
        ("batch_size", "1".into()),
        ("audio_format", "wav".into()),
        ("use_random_seed", "false".into()),
        ("seed", request.seed.to_string()),
        ("thinking", "false".into()),
        ("prompt", request.caption.clone()),
        ("lyrics", request.lyrics.clone()),
        ("vocal_language", request.language.clone()),
        ("inference_steps", request.steps.to_string()),
        ("shift", request.shift.to_string()),
        ("guidance_scale", request.cfg_scale.to_string()),
        ("cfg_interval_start", request.cfg_interval.start.to_string()),
        ("cfg_interval_end", request.cfg_interval.end.to_string()),
    ];
    // The official `bpm` is an integer field.
    if let Some(bpm) = request.metas.bpm {
        fields.push(("bpm", (bpm.round() as i64).to_string()));
    }
    if let Some(key) = &request.metas.key {
        fields.push(("key_scale", key.clone()));
    }
    if let Some(signature) = &request.metas.time_signature {
        fields.push(("time_signature", signature.clone()));
    }
    fields.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

/// `audio` with zeros after it up to a whole number of latent frames.
fn whole_frames(audio: Audio) -> Audio {
    let len = audio.len();
    pad_audio(&audio, 0, len.next_multiple_of(GRID.hop) - len)
}

/// `audio` as the bytes of a 32-bit float WAV file (every sample exact).
fn wav_bytes(audio: &Audio) -> Result<Vec<u8>> {
    let folder = tempfile::tempdir().map_err(|source| EngineError::Write { path: std::env::temp_dir(), source })?;
    let path = folder.path().join("upload.wav");
    write_wav(&path, audio, WavFormat::Float32)?;
    std::fs::read(&path).map_err(|source| EngineError::Io { path, source })
}

/// A downloaded result as 48 kHz stereo; `Err` says what is wrong with it.
fn read_result(bytes: &[u8]) -> std::result::Result<Audio, String> {
    let not_audio = |e: EngineError| format!("a result that is not a readable WAV file ({e})");
    let folder = tempfile::tempdir().map_err(|e| format!("a result that cannot be stored to be read ({e})"))?;
    let path = folder.path().join("result.wav");
    std::fs::write(&path, bytes).map_err(|e| format!("a result that cannot be stored to be read ({e})"))?;
    let audio = AudioFile::open(&path).and_then(|file| file.decode(MAX_RESULT_S)).map_err(not_audio)?;
    let audio = resample(&to_stereo(audio).map_err(not_audio)?, MODEL_SAMPLE_RATE).map_err(not_audio)?;
    check_finite(&audio, "the result").map_err(not_audio)?;
    Ok(audio)
}

/// The server's clip on the request's timeline: its first `plan.length` samples (it starts where the upload
/// starts, and may run longer), spliced around a studio repaint's regions.
fn place(mut result: Audio, plan: &Plan) -> std::result::Result<Audio, String> {
    if result.len() < plan.length {
        return Err(format!(
            "a result of {:.3} s where the job needs {:.3} s",
            result.duration_s(),
            plan.length as f64 / GRID.sample_rate as f64
        ));
    }
    result.channels.iter_mut().for_each(|channel| channel.truncate(plan.length));
    match &plan.splice {
        Some(splice) => splice.apply(&result).map_err(|e| format!("a result that cannot be spliced ({e})")),
        None => Ok(result),
    }
}

/// Passes progress on and turns a cancel into [`EngineError::Cancelled`].
struct Reporter<'p, 'a> {
    progress: &'p mut ProgressFn<'a>,
    /// The latest progress, repeated by [`Reporter::tick`] (the engine announces each change once).
    last: Progress,
}

impl Reporter<'_, '_> {
    fn report(&mut self, progress: Progress) -> Result<()> {
        self.last = progress;
        self.tick()
    }

    fn tick(&mut self) -> Result<()> {
        match (self.progress)(self.last) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(EngineError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Router;

    use super::*;
    use crate::pipeline::request::{CfgInterval, Metas};

    const RATE: usize = MODEL_SAMPLE_RATE as usize;

    fn request(task: Task, source: Option<Audio>) -> GenerationRequest {
        GenerationRequest {
            task,
            mode: Mode::Studio,
            source,
            references: Vec::new(),
            caption: "lo-fi".into(),
            lyrics: "[Instrumental]".into(),
            language: "en".into(),
            metas: Metas { bpm: Some(91.6), ..Metas::default() },
            seed: 42,
            steps: 8,
            shift: 3.0,
            cfg_scale: 1.0,
            cfg_interval: CfgInterval::ALL,
            noise: None,
        }
    }

    fn repaint(ranges: Vec<(f64, f64)>, crossfade_ms: Option<f64>) -> Task {
        Task::Repaint { ranges, strength: 1.0, splice_crossfade_ms: crossfade_ms }
    }

    /// A stereo clip whose every sample differs: left `i`, right `-i` (scaled).
    fn ramp(len: usize, scale: f32) -> Audio {
        let left: Vec<f32> = (0..len).map(|i| i as f32 * scale).collect();
        let right = left.iter().map(|s| -s).collect();
        Audio::new(MODEL_SAMPLE_RATE, vec![left, right])
    }

    fn field<'a>(plan: &'a Plan, name: &str) -> &'a str {
        plan.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn a_repaint_keeps_the_original_outside_its_region_and_crossfade_bit_for_bit_and_takes_a_longer_result() {
        let source = ramp(3 * RATE + 77, 1e-6);
        let plan = plan(&request(repaint(vec![(1.0, 2.0)], Some(10.0)), Some(source.clone()))).unwrap();
        assert_eq!((field(&plan, "repainting_start"), field(&plan, "repainting_end")), ("1", "2"));
        assert_eq!(
            (field(&plan, "task_type"), field(&plan, "batch_size"), field(&plan, "bpm")),
            ("repaint", "1", "92")
        );
        let upload = plan.source.as_ref().unwrap();
        assert_eq!(upload.len(), source.len().next_multiple_of(1920), "whole frames");
        assert_eq!(&upload.channels[0][..source.len()], &source.channels[0][..]);
        // The server's clip: 5.12 s (its minimum), longer than the source.
        let server = Audio::new(MODEL_SAMPLE_RATE, vec![vec![-0.5; 128 * 1920]; 2]);
        let placed = place(server, &plan).unwrap();
        assert_eq!(placed.len(), source.len());
        let fade = RATE / 100;
        for (out, original) in placed.channels.iter().zip(&source.channels) {
            let outside = (0..RATE - fade).chain(2 * RATE + fade..source.len());
            assert!(outside.clone().all(|i| out[i].to_bits() == original[i].to_bits()));
            assert!(out[RATE..2 * RATE].iter().all(|&s| s == -0.5));
            assert!(out[RATE - fade..RATE].iter().all(|&s| s != -0.5));
        }
    }

    #[test]
    fn an_outpaint_before_the_start_aligns_the_result_by_time_on_the_padded_timeline() {
        let source = ramp(2 * RATE, 1e-6);
        let plan = plan(&request(repaint(vec![(-0.5, 0.5)], Some(0.0)), Some(source.clone()))).unwrap();
        // The upload carries the half second of zeros itself; the server repaints from its start.
        assert_eq!((field(&plan, "repainting_start"), field(&plan, "repainting_end")), ("0", "1"));
        let upload = plan.source.as_ref().unwrap();
        assert!(upload.channels[0][..RATE / 2].iter().all(|&s| s == 0.0));
        assert_eq!(upload.channels[0][RATE / 2..RATE / 2 + source.len()], source.channels[0][..]);
        let server = ramp(plan.length + 5000, -1e-7);
        let placed = place(server.clone(), &plan).unwrap();
        assert_eq!(placed.len(), RATE / 2 + source.len());
        // Inside: the server's samples at the same times; after the region: the source, shifted by the pad.
        assert_eq!(placed.channels[0][..RATE], server.channels[0][..RATE]);
        assert_eq!(placed.channels[1][RATE..], source.channels[1][RATE / 2..]);
    }

    #[test]
    fn two_ranges_are_one_span_on_the_server_and_the_original_comes_back_between_them() {
        let source = ramp(4 * RATE, 1e-6);
        let plan = plan(&request(repaint(vec![(0.5, 1.0), (2.0, 3.0)], Some(0.0)), Some(source.clone()))).unwrap();
        assert_eq!((field(&plan, "repainting_start"), field(&plan, "repainting_end")), ("0.5", "3"));
        let placed = place(Audio::new(MODEL_SAMPLE_RATE, vec![vec![0.75; 4 * RATE]; 2]), &plan).unwrap();
        assert_eq!(placed.channels[0][RATE..2 * RATE], source.channels[0][RATE..2 * RATE]);
        assert!(placed.channels[0][RATE / 2..RATE]
            .iter()
            .chain(&placed.channels[0][2 * RATE..3 * RATE])
            .all(|&s| s == 0.75));
    }

    #[test]
    fn results_are_cropped_to_the_local_length_and_a_short_one_is_refused() {
        let text = plan(&request(Task::Text2Music { duration_s: 1.5 }, None)).unwrap();
        assert_eq!((text.length, field(&text, "audio_duration"), text.source.is_none()), (72_000, "1.5", true));
        let cover = Task::Cover { cover_strength: 0.5, noise_strength: 0.0, audio_codes: None };
        let cover = plan(&request(cover, Some(ramp(50_000, 1e-6)))).unwrap();
        assert_eq!((cover.length, cover.source.as_ref().unwrap().len()), (50_000, 51_840));
        let long = place(ramp(128 * 1920, 1e-6), &cover).unwrap();
        assert_eq!(long.channels[0], ramp(50_000, 1e-6).channels[0]);
        let err = place(ramp(40_000, 1e-6), &cover).unwrap_err();
        assert_eq!(err, "a result of 0.833 s where the job needs 1.042 s");
        let codes = Task::Cover {
            cover_strength: 1.0,
            noise_strength: 0.0,
            audio_codes: Some("<|audio_code_5|><|audio_code_9|>".into()),
        };
        assert_eq!(plan(&request(codes, None)).unwrap().length, 2 * 9600);
    }

    #[test]
    fn what_a_server_cannot_run_is_refused_before_anything_is_sent() {
        let mut reference = request(Task::Text2Music { duration_s: 2.0 }, None);
        reference.mode = Mode::Reference;
        let err = plan(&reference).err().expect("refused").to_string();
        assert!(err.contains("reference mode (DiffSynth semantics) runs only on this machine's engine"), "{err}");
        let mut timbres = request(Task::Text2Music { duration_s: 2.0 }, None);
        timbres.references = vec![ramp(RATE, 1e-6), ramp(RATE, 1e-6)];
        assert!(plan(&timbres)
            .err()
            .expect("refused")
            .to_string()
            .contains("a server takes one timbre reference, not 2"));
        let no_source = plan(&request(repaint(vec![(0.0, 1.0)], None), None)).err().expect("refused").to_string();
        assert!(no_source.contains("this task needs source audio"), "{no_source}");
    }

    fn run(url: &str, request: &GenerationRequest) -> Result<Audio> {
        let server = RemoteServer::new(url, None).unwrap();
        generate(&server, request, &mut |_| ControlFlow::Continue(()))
    }

    /// A port on which nothing listens (bound, then released).
    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn a_server_that_is_down_is_named_with_what_to_check() {
        let url = format!("http://127.0.0.1:{}", closed_port());
        let err = run(&url, &request(Task::Text2Music { duration_s: 2.0 }, None)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot reach the server {url} (connection refused); is it running")),
            "{err}"
        );
    }

    /// Serves `router` on a free local port for the rest of the test process; its base URL.
    ///
    /// A stand-in used ONLY for replies no real ACE-Step server gives — an HTML page where JSON belongs (another web
    /// app, or a proxy's error page), a garbled `result`, a proxy's 502 — which the real-server tests
    /// (tests/tests/remote.rs) cannot provoke.
    fn stand_in(router: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router).await.unwrap();
            });
        });
        url
    }

    const HEALTHY: &str = r#"{"data": {"status": "ok"}, "code": 200, "error": null}"#;
    const RELEASED: &str = r#"{"data": {"task_id": "t1", "status": "queued", "queue_position": 1}, "code": 200}"#;

    #[test]
    fn malformed_replies_and_proxy_errors_name_the_server_and_what_came_back() {
        let t2m = request(Task::Text2Music { duration_s: 2.0 }, None);
        let web_page = stand_in(Router::new().route("/health", get(|| async { "<html>Welcome to nginx</html>" })));
        let err = run(&web_page, &t2m).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "the server {web_page} sent a reply that is not JSON (`<html>Welcome to nginx</html>`); is that \
                 address an ACE-Step 1.5 API server"
            )),
            "{err}"
        );
        let garbled = stand_in(
            Router::new()
                .route("/health", get(|| async { HEALTHY }))
                .route("/release_task", post(|_: Bytes| async { RELEASED }))
                .route(
                    "/query_result",
                    post(|_: Bytes| async {
                        r#"{"data": [{"task_id": "t1", "status": 0, "result": "[{\"progress\": "}]}"#
                    }),
                ),
        );
        let err = run(&garbled, &t2m).unwrap_err().to_string();
        assert!(err.contains("sent a /query_result reply whose `result` is not a JSON string of a list"), "{err}");
        let gateway = stand_in(Router::new().route("/health", get(|| async { HEALTHY })).route(
            "/release_task",
            post(|_: Bytes| async { (StatusCode::BAD_GATEWAY, "<html><h1>502 Bad Gateway</h1></html>") }),
        ));
        let err = run(&gateway, &t2m).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the server {gateway} failed on /release_task (HTTP 502: <html><h1>502 Bad Gateway</h1></html>); the \
                 job is lost there: see the server's log, then try again"
            )
        );
        let not_audio = stand_in(
            Router::new()
                .route("/health", get(|| async { HEALTHY }))
                .route("/release_task", post(|_: Bytes| async { RELEASED }))
                .route(
                    "/query_result",
                    post(|_: Bytes| async { r#"{"data": [{"task_id": "t1", "status": 1, "result": "[{\"file\": \"/v1/audio?path=a.wav\"}]"}]}"# }),
                )
                .route("/v1/audio", get(|| async { "this is not a WAV file" })),
        );
        let err = run(&not_audio, &t2m).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("the server {not_audio} sent a result that is not a readable WAV file")),
            "{err}"
        );
    }

    #[test]
    fn a_cancel_stops_the_job_while_the_server_does_not_answer() {
        // A server that accepts the connection and never answers: the cancel must not wait for it.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let server = RemoteServer::new(&url, None).unwrap();
        let started = Instant::now();
        let mut calls = 0;
        let outcome = generate(&server, &request(Task::Text2Music { duration_s: 2.0 }, None), &mut |_| {
            calls += 1;
            if calls > 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(outcome, Err(EngineError::Cancelled)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
        drop(silent);
    }
}
