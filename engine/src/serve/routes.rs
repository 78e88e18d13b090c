//! The routes of the ACE-Step 1.5 REST API (`acestep/api/http/*`), plus Retake's `POST /v1/cancel`.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::body::{self, Upload};
use super::fields::{Fields, Kind, Spec};
use super::jobs::Info;
use super::{auth, envelope, ApiError, App};
use crate::audio::{resample, to_stereo, Audio, AudioFile, MODEL_SAMPLE_RATE};
use crate::pipeline::request::MAX_DURATION_S;
use crate::pipeline::timbre::checked_reference;
use crate::runtime::SubmitError;

/// The lowest source rate taken, as the CLI's (cli/clip.rs).
const MIN_SOURCE_RATE: u32 = 8_000;

/// The router over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/release_task", post(release_task))
        .route("/query_result", post(query_result))
        .route("/v1/cancel", post(cancel))
        .route("/v1/audio", get(audio))
        .route("/v1/stats", get(stats))
        .route("/v1/models", get(models))
        .route("/v1/model_inventory", get(model_inventory))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed") })
        .layer(axum::extract::DefaultBodyLimit::max(app.max_upload))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    envelope(json!({
        "status": "ok",
        "service": "ACE-Step API",
        "version": "1.0",
        // The model loads on the first job; jobs are taken from the start.
        "models_initialized": true,
        "llm_initialized": false,
        "loaded_model": app.model_name,
        "loaded_lm_model": null,
    }))
}

async fn release_task(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    if app.shutting_down.load(Ordering::Acquire) {
        return Err(shutting_down());
    }
    let body = body::read(request, app.max_upload).await?;
    auth::check_request(app.api_key.as_deref(), token(&body.fields).as_deref(), &headers)?;
    let spec =
        Spec::parse(&Fields::new(&body.fields), app.variant, &mut super::random_seed).map_err(ApiError::bad_request)?;
    let requests = if let Kind::Unsupported(_) = spec.kind {
        Vec::new()
    } else {
        let source = match (body.source, spec.src_audio_path.as_deref()) {
            (Some(upload), _) => Some(decode_upload("src_audio", upload).await?),
            (None, Some(path)) => Some(decode_path("src_audio_path", checked_path(path)?).await?),
            (None, None) if spec.needs_source() => {
                return Err(ApiError::bad_request(
                    "this task_type needs source audio: upload it as the multipart file part `src_audio`, or give \
                     src_audio_path",
                ))
            }
            (None, None) => None,
        };
        let reference = match (body.reference, spec.reference_audio_path.as_deref()) {
            (Some(upload), _) => Some(decode_upload("reference_audio", upload).await?),
            (None, Some(path)) => Some(decode_path("reference_audio_path", checked_path(path)?).await?),
            (None, None) => None,
        };
        let references = match reference {
            Some(audio) => vec![checked_reference(0, &audio).map_err(|e| ApiError::bad_request(e.to_string()))?],
            None => Vec::new(),
        };
        spec.requests(source, references).map_err(ApiError::bad_request)?
    };
    let info = Info {
        prompt: spec.prompt.clone(),
        lyrics: spec.lyrics.clone(),
        bpm: requests.first().and_then(|r| r.metas.bpm),
        key: requests.first().and_then(|r| r.metas.key.clone()),
        time_signature: requests.first().and_then(|r| r.metas.time_signature.clone()),
        dit_model: app.model_name.clone(),
    };
    let task_id = uuid::Uuid::new_v4().to_string();
    let mut jobs = app.jobs.lock();
    if jobs.unfinished() > app.queue {
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Server busy: queue is full"));
    }
    jobs.insert(&task_id, spec.format, spec.seeds.clone(), info);
    if let Kind::Unsupported(kind) = &spec.kind {
        let error = format!(
            "task_type `{kind}` is not available in retake serve, which runs text2music, cover and repaint; the \
             official server runs {kind} only on a base model"
        );
        jobs.fail(&task_id, "failed", error);
    }
    // Submitted under the table's lock, so the engine's first event for a job finds it attached.
    for (index, request) in requests.into_iter().enumerate() {
        match app.engine.submit(request) {
            Ok(job) => jobs.attach(&task_id, index, job),
            Err(e) => {
                for job in jobs.fail(&task_id, "failed", e.to_string()) {
                    app.engine.cancel(job);
                }
                let status = match e {
                    SubmitError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
                    SubmitError::Stopped | SubmitError::BudgetTooSmall(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                return Err(ApiError::new(status, e.to_string()));
            }
        }
    }
    // As the official server counts it: the tasks waiting, this one included (a task failed at once too).
    let position = jobs.waiting().max(1);
    Ok(envelope(json!({ "task_id": task_id, "status": "queued", "queue_position": position })))
}

async fn query_result(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let body = body::read(request, app.max_upload).await?;
    auth::check_request(app.api_key.as_deref(), token(&body.fields).as_deref(), &headers)?;
    // A list, or a JSON string holding one (the official `parse_task_id_list`); anything else is no ids.
    let ids: Vec<Value> = match body.fields.get("task_id_list") {
        Some(Value::Array(ids)) => ids.clone(),
        Some(Value::String(text)) => serde_json::from_str::<Vec<Value>>(text).unwrap_or_default(),
        _ => Vec::new(),
    };
    let jobs = app.jobs.lock();
    let items = ids
        .iter()
        .map(|id| {
            let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            jobs.query(&id, audio_url)
        })
        .collect();
    Ok(envelope(Value::Array(items)))
}

/// Retake's addition: `POST /v1/cancel` with `{"task_id": ...}` stops the task's jobs within one step.
async fn cancel(State(app): State<Arc<App>>, headers: HeaderMap, request: Request) -> Result<Json<Value>, ApiError> {
    let body = body::read(request, app.max_upload).await?;
    auth::check_request(app.api_key.as_deref(), token(&body.fields).as_deref(), &headers)?;
    let Some(id) = body.fields.get("task_id").and_then(Value::as_str).map(str::to_owned) else {
        return Err(ApiError::bad_request("send the task to cancel as {\"task_id\": \"...\"}"));
    };
    let mut jobs = app.jobs.lock();
    match jobs.jobs_of(&id) {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("unknown task_id `{id}`"))),
        Some(Err(status)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task `{id}` has already ended (status {}); nothing to cancel", status.code()),
        )),
        Some(Ok(_)) => {
            for job in jobs.fail(&id, "cancelled", "cancelled by POST /v1/cancel".into()) {
                app.engine.cancel(job);
            }
            Ok(envelope(json!({ "task_id": id, "status": "cancelled" })))
        }
    }
}

#[derive(serde::Deserialize)]
struct AudioQuery {
    path: Option<String>,
}

async fn audio(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<AudioQuery>,
) -> Result<Response, ApiError> {
    auth::check_header(app.api_key.as_deref(), &headers)?;
    let Some(path) = query.path else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the query parameter `path` is required"));
    };
    let path = own_file(&app.out_dir, Path::new(&path))?;
    if !app.jobs.lock().owns_file(&path) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Audio file not found"));
    }
    let bytes =
        tokio::fs::read(&path).await.map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "Audio file not found"))?;
    let media_type = match path.extension().and_then(|e| e.to_str()) {
        Some("flac") => "audio/flac",
        _ => "audio/wav",
    };
    Ok(([(header::CONTENT_TYPE, media_type)], bytes).into_response())
}

async fn stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    auth::check_header(app.api_key.as_deref(), &headers)?;
    let jobs = app.jobs.lock();
    let (counts, avg) = jobs.stats();
    Ok(envelope(json!({
        "jobs": counts,
        "queue_size": jobs.waiting(),
        "queue_maxsize": app.queue,
        "avg_job_seconds": avg,
    })))
}

/// The OpenRouter-style model list (`acestep/openrouter_adapter.py::list_models`), open without a key.
async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let created = super::unix_seconds().saturating_sub(86_400 * 30);
    Json(json!({
        "object": "list",
        "data": [{
            "id": format!("acestep/{}", app.model_name),
            "name": format!("ACE-Step {}", app.model_name),
            "created": created,
            "input_modalities": ["text", "audio"],
            "output_modalities": ["audio", "text"],
            "context_length": 4096,
            "max_output_length": MAX_DURATION_S as u64,
            "pricing": { "prompt": "0", "completion": "0", "request": "0", "image": "0" },
            "description": "AI music generation model (Retake's engine)",
            "architecture": null,
        }],
    }))
}

async fn model_inventory(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    auth::check_header(app.api_key.as_deref(), &headers)?;
    Ok(envelope(json!({
        "models": [{ "name": app.model_name, "is_default": true, "is_loaded": true }],
        "default_model": app.model_name,
        "lm_models": [],
        "loaded_lm_model": null,
        "llm_initialized": false,
    })))
}

/// The `ai_token` field, when the body has one.
fn token(fields: &serde_json::Map<String, Value>) -> Option<String> {
    fields.get("ai_token").and_then(Value::as_str).map(str::to_owned)
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; send the task to another server")
}

/// The download URL of a result file, as the official `_path_to_audio_url`.
fn audio_url(path: &Path) -> String {
    let encoded: String = form_urlencoded::byte_serialize(path.to_string_lossy().as_bytes()).collect();
    format!("/v1/audio?path={encoded}")
}

/// `requested` made absolute and free of `.` and `..` (without touching the file system), then refused with 403
/// unless it lies inside `out_dir` (the official rule), and with 404 when it is not a file there.
fn own_file(out_dir: &Path, requested: &Path) -> Result<PathBuf, ApiError> {
    let absolute = std::env::current_dir().unwrap_or_default().join(requested);
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let denied = || ApiError::new(StatusCode::FORBIDDEN, "Access denied: path outside allowed directory");
    if !normal.starts_with(out_dir) {
        return Err(denied());
    }
    // A link inside the folder must not lead out of it.
    match normal.canonicalize() {
        Ok(real) if real.starts_with(out_dir) && real.is_file() => Ok(real),
        Ok(real) if !real.starts_with(out_dir) => Err(denied()),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Audio file not found")),
    }
}

/// A server path given for `src_audio_path`/`reference_audio_path`, with the official rule
/// (`release_task_audio_paths.py::validate_audio_path`): inside the system's temp folder, or relative without `..`.
fn checked_path(path: &str) -> Result<PathBuf, ApiError> {
    let temp = std::env::temp_dir().canonicalize().unwrap_or_else(|_| std::env::temp_dir());
    let requested = Path::new(path);
    if let Ok(real) = requested.canonicalize() {
        if real.starts_with(&temp) {
            return Ok(real);
        }
    }
    if requested.is_absolute() {
        return Err(ApiError::bad_request("absolute audio file paths are not allowed"));
    }
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(ApiError::bad_request("path traversal in audio file paths is not allowed"));
    }
    Ok(requested.to_path_buf())
}

/// An uploaded file decoded to 48 kHz stereo (off the async workers); a file that is not audio is a 400.
async fn decode_upload(field: &'static str, upload: Upload) -> Result<Audio, ApiError> {
    let extension = Path::new(&upload.filename).extension().and_then(|e| e.to_str()).unwrap_or("bin").to_owned();
    let name = upload.filename.clone();
    blocking(move || {
        let mut file = tempfile::Builder::new()
            .prefix("retake-upload-")
            .suffix(&format!(".{extension}"))
            .tempfile()
            .map_err(|e| format!("cannot store the upload: {e}"))?;
        std::io::Write::write_all(&mut file, &upload.bytes).map_err(|e| format!("cannot store the upload: {e}"))?;
        for_model(file.path()).map_err(|e| {
            format!("{field}: the uploaded file `{name}` is not audio Retake can read ({e}); upload WAV, AIFF, FLAC, MP3 or Ogg Vorbis")
        })
    })
    .await
}

/// A server-side audio file decoded to 48 kHz stereo.
async fn decode_path(field: &'static str, path: PathBuf) -> Result<Audio, ApiError> {
    blocking(move || for_model(&path).map_err(|e| format!("{field}: {e}"))).await
}

async fn blocking(work: impl FnOnce() -> Result<Audio, String> + Send + 'static) -> Result<Audio, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::bad_request),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the audio failed: {e}"))),
    }
}

/// `path` as the engine takes a source: from 8 kHz, at most 600 s, stereo at 48 kHz.
fn for_model(path: &Path) -> crate::Result<Audio> {
    let file = AudioFile::open(path)?;
    if file.sample_rate() < MIN_SOURCE_RATE {
        return Err(crate::EngineError::invalid(format!(
            "it is sampled at {} Hz; send audio from {MIN_SOURCE_RATE} Hz up",
            file.sample_rate()
        )));
    }
    let audio = to_stereo(file.decode(MAX_DURATION_S)?)?;
    if audio.is_empty() {
        return Err(crate::EngineError::invalid("it holds no samples"));
    }
    resample(&audio, MODEL_SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_output_folder_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().canonicalize().unwrap();
        std::fs::write(out.join("a.wav"), b"RIFF").unwrap();
        assert_eq!(own_file(&out, &out.join("a.wav")).unwrap(), out.join("a.wav"));
        let status = |p: PathBuf| own_file(&out, &p).unwrap_err().status;
        assert_eq!(status(out.join("../../etc/passwd")), StatusCode::FORBIDDEN);
        assert_eq!(status(PathBuf::from("/etc/passwd")), StatusCode::FORBIDDEN);
        assert_eq!(status(out.join("b.wav")), StatusCode::NOT_FOUND);
        assert_eq!(status(out.join("x/../../a.wav")), StatusCode::FORBIDDEN);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", out.join("link.wav")).unwrap();
            assert_eq!(status(out.join("link.wav")), StatusCode::FORBIDDEN, "a link out of the folder");
        }
    }

    #[test]
    fn server_paths_follow_the_official_rule() {
        assert_eq!(checked_path("/etc/passwd").unwrap_err().detail, "absolute audio file paths are not allowed");
        assert_eq!(
            checked_path("a/../../b.wav").unwrap_err().detail,
            "path traversal in audio file paths is not allowed"
        );
        let inside = tempfile::NamedTempFile::new().unwrap();
        assert!(checked_path(inside.path().to_str().unwrap()).is_ok());
        assert_eq!(checked_path("take.wav").unwrap(), PathBuf::from("take.wav"));
    }

    #[test]
    fn audio_urls_encode_the_whole_path() {
        assert_eq!(audio_url(Path::new("/tmp/a b/x.wav")), "/v1/audio?path=%2Ftmp%2Fa+b%2Fx.wav");
    }
}
