//! The server's replies read: the JSON envelope `{"data", "code", "error", …}` (acestep/api_server.py), the
//! task id of `/release_task` and the job state of `/query_result` (acestep/api/http/query_result_service.py).
//! Each reader says what is wrong with a reply that does not have the official shape.

use serde_json::Value;

/// A job as `/query_result` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Status 0: queued or running. `known` is false when the server holds no record of the job (its result is an
    /// empty list: the official server's answer for an id it never issued or lost in a restart).
    Waiting {
        /// `result[0].progress`, 0..1, when given.
        progress: Option<f64>,
        /// `result[0].stage` ("queued", "running", …), when given.
        stage: Option<String>,
        /// Whether the server knows the job.
        known: bool,
    },
    /// Status 1: the result's download path (`result[0].file`, e.g. `/v1/audio?path=…`).
    Done {
        /// Where to download it.
        file: String,
    },
    /// Status 2, with the server's message when it gives one (`retake serve` does; the official server does not).
    Failed {
        /// The reason.
        error: Option<String>,
    },
}

/// The longest piece of an unexpected reply quoted in a message.
const QUOTE_CHARS: usize = 160;

/// `text` cut to [`QUOTE_CHARS`] characters on one line, for a message.
pub fn quote(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// The envelope's `data`.
pub fn envelope_data(body: &str) -> Result<Value, String> {
    let reply: Value =
        serde_json::from_str(body).map_err(|_| format!("a reply that is not JSON (`{}`)", quote(body)))?;
    match reply.get("data") {
        Some(data) if !data.is_null() => Ok(data.clone()),
        _ => Err(format!("a JSON reply without the API's `data` field (`{}`)", quote(body))),
    }
}

/// The error text of a refusal: the official `{"detail": …}`, an envelope's `error`, else the body itself.
pub fn detail(body: &str) -> String {
    let text = serde_json::from_str::<Value>(body).ok().and_then(|reply| {
        let field = reply.get("detail").or_else(|| reply.get("error"))?;
        Some(match field {
            Value::String(text) => text.clone(),
            Value::Null => return None,
            other => other.to_string(),
        })
    });
    quote(&text.unwrap_or_else(|| body.to_string()))
}

/// Checks `/health`'s `data.status` is "ok".
pub fn health(data: &Value) -> Result<(), String> {
    match data.get("status").and_then(Value::as_str) {
        Some("ok") => Ok(()),
        Some(status) => Err(format!("a health status of `{status}` instead of `ok`")),
        None => Err(format!("a /health reply without `data.status` (`{}`)", quote(&data.to_string()))),
    }
}

/// `/release_task`'s `data.task_id`.
pub fn task_id(data: &Value) -> Result<String, String> {
    match data.get("task_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(format!("a /release_task reply without `data.task_id` (`{}`)", quote(&data.to_string()))),
    }
}

/// The state of job `task_id` in `/query_result`'s `data` (a list of `{task_id, status, result, …}`; `result` is a
/// JSON string holding a list of items).
pub fn job_state(data: &Value, task_id: &str) -> Result<JobState, String> {
    let malformed = |what: &str| format!("a /query_result reply {what} (`{}`)", quote(&data.to_string()));
    let entries = data.as_array().ok_or_else(|| malformed("whose `data` is not a list"))?;
    let entry = entries
        .iter()
        .find(|entry| entry.get("task_id").and_then(Value::as_str) == Some(task_id))
        .ok_or_else(|| malformed(&format!("without an entry for job {task_id}")))?;
    let status = entry.get("status").and_then(Value::as_i64).ok_or_else(|| malformed("without a numeric `status`"))?;
    let items = match entry.get("result") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .map_err(|_| malformed("whose `result` is not a JSON string of a list"))?,
        Some(list @ Value::Array(_)) => list.clone(),
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(_) => return Err(malformed("whose `result` is not a JSON string of a list")),
    };
    let items = items.as_array().ok_or_else(|| malformed("whose `result` is not a list"))?;
    let first = items.first();
    let text = |item: Option<&Value>, key: &str| {
        item.and_then(|item| item.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
    };
    match status {
        0 => Ok(JobState::Waiting {
            progress: first.and_then(|item| item.get("progress")).and_then(Value::as_f64),
            stage: text(first, "stage"),
            known: first.is_some(),
        }),
        1 => match text(first, "file") {
            Some(file) => Ok(JobState::Done { file }),
            None => Err(malformed("for a finished job without `result[0].file`")),
        },
        2 => Ok(JobState::Failed { error: text(Some(entry), "error").or_else(|| text(first, "error")) }),
        other => Err(malformed(&format!("with an unknown status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_official_query_result_shapes_read_as_job_states() {
        let running = json!([{"task_id": "a", "status": 0, "progress_text": "other job's log line",
            "result": "[{\"file\": \"\", \"status\": 0, \"progress\": 0.5, \"stage\": \"running\"}]"}]);
        assert_eq!(
            job_state(&running, "a").unwrap(),
            JobState::Waiting { progress: Some(0.5), stage: Some("running".into()), known: true }
        );
        let unknown = json!([{"task_id": "b", "result": "[]", "status": 0}]);
        assert_eq!(job_state(&unknown, "b").unwrap(), JobState::Waiting { progress: None, stage: None, known: false });
        let done = json!([{"task_id": "c", "status": 1, "result": "[{\"file\": \"/v1/audio?path=x.wav\"}]"}]);
        assert_eq!(job_state(&done, "c").unwrap(), JobState::Done { file: "/v1/audio?path=x.wav".into() });
        let failed = json!([{"task_id": "d", "status": 2, "result": "[{\"file\": \"\", \"error\": null}]"}]);
        assert_eq!(job_state(&failed, "d").unwrap(), JobState::Failed { error: None });
        let explained = json!([{"task_id": "e", "status": 2, "result": "[]", "error": "out of memory"}]);
        assert_eq!(job_state(&explained, "e").unwrap(), JobState::Failed { error: Some("out of memory".into()) });
    }

    #[test]
    fn replies_without_the_official_shape_say_what_is_missing() {
        assert!(envelope_data("<html>502 Bad Gateway</html>").unwrap_err().starts_with("a reply that is not JSON"));
        assert!(envelope_data("{\"code\": 200}").unwrap_err().starts_with("a JSON reply without the API's `data`"));
        assert!(task_id(&json!({"status": "queued"})).unwrap_err().contains("without `data.task_id`"));
        let garbled = json!([{"task_id": "a", "status": 0, "result": "[{"}]);
        assert!(job_state(&garbled, "a").unwrap_err().contains("`result` is not a JSON string of a list"));
        let other = json!([{"task_id": "z", "status": 0, "result": "[]"}]);
        assert!(job_state(&other, "a").unwrap_err().contains("without an entry for job a"));
        let done_without_file = json!([{"task_id": "a", "status": 1, "result": "[{}]"}]);
        assert!(job_state(&done_without_file, "a").unwrap_err().contains("without `result[0].file`"));
        assert!(job_state(&json!([{"task_id": "a", "status": 7}]), "a").unwrap_err().contains("unknown status 7"));
        assert_eq!(health(&json!({"status": "ok"})), Ok(()));
        assert!(health(&json!({"loaded": true})).unwrap_err().contains("without `data.status`"));
    }

    #[test]
    fn refusal_details_and_quotes_stay_short() {
        assert_eq!(detail("{\"detail\": \"Invalid API key\"}"), "Invalid API key");
        assert_eq!(detail("{\"data\": null, \"error\": \"queue full\"}"), "queue full");
        assert_eq!(detail("Internal Server Error"), "Internal Server Error");
        let long = "x".repeat(500);
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 1);
        assert_eq!(quote("a\n  b"), "a b");
    }
}
