//! The API key, with the official rules (`acestep/api/http/auth.py`): off unless a key is set; then
//! `/release_task`, `/query_result` (and Retake's `/v1/cancel`) take an `ai_token` body field — which wins when
//! present — or the `Authorization` header, `/v1/*` the header only. The header may carry the key bare or as
//! `Bearer KEY`. `/health` and `/v1/models` stay open.

use axum::http::{HeaderMap, StatusCode};

use super::ApiError;

/// The key's check for a route that reads a body: `ai_token` first, then the header.
pub fn check_request(key: Option<&str>, ai_token: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    match ai_token.filter(|t| !t.is_empty()) {
        Some(token) if same(token, key) => Ok(()),
        Some(_) => Err(unauthorized("Invalid ai_token")),
        None => match header_token(headers) {
            Some(token) if same(token, key) => Ok(()),
            Some(_) => Err(unauthorized("Invalid API key")),
            None => Err(unauthorized("Missing ai_token or Authorization header")),
        },
    }
}

/// The key's check for a route that takes the header only.
pub fn check_header(key: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    match header_token(headers) {
        Some(token) if same(token, key) => Ok(()),
        Some(_) => Err(unauthorized("Invalid API key")),
        None => Err(unauthorized("Missing Authorization header")),
    }
}

/// The `Authorization` header's token (after `Bearer `), when the header is there and not empty.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().unwrap_or("\u{0}");
    let token = value.strip_prefix("Bearer ").unwrap_or(value);
    (!value.is_empty()).then_some(token)
}

/// Compares without stopping at the first differing byte, so the time taken does not tell how much matched.
fn same(token: &str, key: &str) -> bool {
    token.len() == key.len() && token.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(v) = value {
            map.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        }
        map
    }

    fn detail(result: Result<(), ApiError>) -> Option<String> {
        result.err().map(|e| {
            assert_eq!(e.status, StatusCode::UNAUTHORIZED);
            e.detail
        })
    }

    #[test]
    fn without_a_key_everything_passes() {
        assert!(check_request(None, Some("x"), &headers(Some("Bearer y"))).is_ok());
        assert!(check_header(None, &headers(None)).is_ok());
    }

    #[test]
    fn the_official_rules_and_messages_apply_with_a_key() {
        let key = Some("s3cret");
        assert_eq!(detail(check_request(key, None, &headers(Some("Bearer s3cret")))), None);
        assert_eq!(detail(check_request(key, None, &headers(Some("s3cret")))), None, "a bare key passes");
        assert_eq!(detail(check_request(key, Some("s3cret"), &headers(Some("Bearer wrong")))), None, "ai_token wins");
        assert_eq!(
            detail(check_request(key, Some("wrong"), &headers(Some("Bearer s3cret")))).unwrap(),
            "Invalid ai_token"
        );
        assert_eq!(detail(check_request(key, None, &headers(Some("Bearer s3cre")))).unwrap(), "Invalid API key");
        assert_eq!(
            detail(check_request(key, None, &headers(None))).unwrap(),
            "Missing ai_token or Authorization header"
        );
        assert_eq!(detail(check_header(key, &headers(None))).unwrap(), "Missing Authorization header");
        assert_eq!(detail(check_header(key, &headers(Some("Bearer nope")))).unwrap(), "Invalid API key");
        assert_eq!(detail(check_header(key, &headers(Some("Bearer s3cret")))), None);
    }
}
