//! nice-plug's saved state as the CLAP wrapper writes it: a little-endian `u64` length, then JSON with
//! `params` and `fields` (each `#[persist]` field as a JSON string) (docs/plugin-hosting.md §3d, "State").

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A decoded state blob.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginState {
    json: Value,
}

impl PluginState {
    /// Decodes the bytes a CLAP `state.save` produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (prefix, body) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("state of {} bytes has no 8-byte length prefix", bytes.len()))?;
        let length = u64::from_le_bytes(*prefix);
        if length != body.len() as u64 {
            return Err(format!("state length prefix says {length} bytes, but {} follow", body.len()));
        }
        let json = serde_json::from_slice(body).map_err(|err| format!("state JSON does not parse: {err}"))?;
        Ok(Self { json })
    }

    /// The bytes a CLAP `state.load` accepts.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.json.to_string();
        let mut bytes = (body.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// The saved value of parameter `id` (its string id), as nice-plug stores it (e.g. `{"f32": 2.5}`).
    pub fn param(&self, id: &str) -> Option<&Value> {
        self.json.get("params")?.get(id)
    }

    /// Replaces the saved value of parameter `id` with `value` (e.g. `{"i32": 25}`), as a crafted project file
    /// could.
    pub fn set_param(&mut self, id: &str, value: Value) -> Result<(), String> {
        let params = self
            .json
            .get_mut("params")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| "state has no `params` object".to_string())?;
        params.insert(id.to_string(), value);
        Ok(())
    }

    /// The `#[persist]` field `key`, decoded.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Result<T, String> {
        let text = self
            .json
            .get("fields")
            .and_then(|fields| fields.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("state has no persisted field `{key}`"))?;
        serde_json::from_str(text).map_err(|err| format!("persisted field `{key}` does not parse: {err}"))
    }

    /// Replaces the `#[persist]` field `key` with `value`.
    pub fn set_field<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), String> {
        let text = serde_json::to_string(value).map_err(|err| format!("field `{key}`: {err}"))?;
        let fields = self
            .json
            .get_mut("fields")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| "state has no `fields` object".to_string())?;
        fields.insert(key.to_string(), Value::String(text));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(json: &str) -> Vec<u8> {
        [(json.len() as u64).to_le_bytes().as_slice(), json.as_bytes()].concat()
    }

    #[test]
    fn decode_then_encode_gives_the_same_bytes_back() {
        let bytes = framed(r#"{"fields":{"prompt":"\"funk\""},"params":{"seed":{"i32":42}},"version":"0.1.0"}"#);
        let state = PluginState::decode(&bytes).unwrap();
        assert_eq!(state.encode(), bytes);
        assert_eq!(state.param("seed"), Some(&serde_json::json!({"i32": 42})));
    }

    #[test]
    fn fields_are_json_inside_json_strings() {
        let mut state = PluginState::decode(&framed(r#"{"fields":{"prompt":"\"funk\""}}"#)).unwrap();
        assert_eq!(state.field::<String>("prompt").unwrap(), "funk");
        state.set_field("prompt", &"tape \"warm\" soul").unwrap();
        let reloaded = PluginState::decode(&state.encode()).unwrap();
        assert_eq!(reloaded.field::<String>("prompt").unwrap(), "tape \"warm\" soul");
    }

    #[test]
    fn a_parameter_value_can_be_replaced() {
        let mut state = PluginState::decode(&framed(r#"{"fields":{},"params":{"key":{"string":"auto"}}}"#)).unwrap();
        state.set_param("key", serde_json::json!({ "i32": 25 })).unwrap();
        let reloaded = PluginState::decode(&state.encode()).unwrap();
        assert_eq!(reloaded.param("key"), Some(&serde_json::json!({ "i32": 25 })));
        let mut bare = PluginState::decode(&framed("{}")).unwrap();
        assert_eq!(bare.set_param("key", Value::Null).unwrap_err(), "state has no `params` object");
    }

    #[test]
    fn a_wrong_length_prefix_is_refused() {
        let mut bytes = framed("{}");
        bytes[0] = 9;
        assert_eq!(PluginState::decode(&bytes).unwrap_err(), "state length prefix says 9 bytes, but 2 follow");
    }
}
