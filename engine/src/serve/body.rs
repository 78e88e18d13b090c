//! Request bodies as the official server takes them (`acestep/api/http/release_task_request_parser.py`): JSON,
//! `multipart/form-data` (file parts `src_audio`/`ctx_audio` and `reference_audio`/`ref_audio`),
//! `application/x-www-form-urlencoded`, and a body without a usable content type sniffed as JSON or a form, else
//! 415. Bodies beyond the upload limit are refused with 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use super::ApiError;

/// An uploaded file.
pub struct Upload {
    /// The name the client gave it.
    pub filename: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// A parsed body: its fields (form values as strings) and the uploaded audio.
#[derive(Default)]
pub struct Body {
    /// Fields by name.
    pub fields: Map<String, Value>,
    /// The `src_audio` (or `ctx_audio`) file part.
    pub source: Option<Upload>,
    /// The `reference_audio` (or `ref_audio`) file part.
    pub reference: Option<Upload>,
}

/// Reads `request`'s body; `limit` is the upload limit in bytes, named in the 413's message.
pub async fn read(request: Request, limit: usize) -> Result<Body, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        return multipart(request, limit).await;
    }
    let bytes = Bytes::from_request(request, &()).await.map_err(|e| too_large_or(e.status(), limit, e.body_text()))?;
    if content_type.starts_with("application/json") || content_type.ends_with("+json") {
        return match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => Ok(Body { fields, ..Body::default() }),
            Ok(_) => Err(ApiError::bad_request("JSON payload must be an object")),
            Err(_) => Err(ApiError::bad_request("Malformed JSON payload")),
        };
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(Body { fields: form(&bytes), ..Body::default() });
    }
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        return match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => Ok(Body { fields, ..Body::default() }),
            Ok(_) => Err(ApiError::bad_request("JSON payload must be an object")),
            Err(_) => Err(ApiError::bad_request("Invalid JSON body (hint: set 'Content-Type: application/json')")),
        };
    }
    if !trimmed.is_empty() && bytes.contains(&b'=') {
        return Ok(Body { fields: form(&bytes), ..Body::default() });
    }
    let shown = if content_type.is_empty() { "(missing)" } else { content_type.as_str() };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Unsupported Content-Type: {shown}; use application/json, application/x-www-form-urlencoded, or \
             multipart/form-data"
        ),
    ))
}

/// An urlencoded form's fields (the first value of a repeated name).
fn form(bytes: &[u8]) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        fields.entry(name.into_owned()).or_insert_with(|| Value::String(value.into_owned()));
    }
    fields
}

async fn multipart(request: Request, limit: usize) -> Result<Body, ApiError> {
    let mut parts =
        Multipart::from_request(request, &()).await.map_err(|e| too_large_or(e.status(), limit, e.body_text()))?;
    let mut body = Body::default();
    loop {
        let field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(body),
            Err(e) => return Err(too_large_or(e.status(), limit, e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| too_large_or(e.status(), limit, e.body_text()))?;
        match (filename, name.as_str()) {
            (Some(filename), "src_audio" | "ctx_audio") => body.source = Some(Upload { filename, bytes }),
            (Some(filename), "reference_audio" | "ref_audio") => body.reference = Some(Upload { filename, bytes }),
            // Other files are not read by the official server either.
            (Some(_), _) => {}
            (None, _) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                body.fields.entry(name).or_insert(Value::String(text));
            }
        }
    }
}

/// 413 naming the limit when `status` says the body was too large, else 400 with the parser's message.
fn too_large_or(status: StatusCode, limit: usize, message: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server's upload limit of {} MiB (--max-upload-mb); send a \
                 shorter or compressed (FLAC) file",
                limit >> 20
            ),
        )
    } else {
        ApiError::bad_request(format!("the request body could not be read: {message}"))
    }
}
