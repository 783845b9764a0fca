//! Query-string parameters, CouchDB style: some are plain, some are JSON.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request's query parameters, decoded.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let Some(raw) = raw else {
            return Ok(Query::default());
        };
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        // form_urlencoded replaces invalid UTF-8 with U+FFFD; refuse instead of guessing.
        if pairs
            .iter()
            .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
        {
            return Err(ApiError::query("query string is not valid UTF-8"));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first of several spellings present (`start_key` / `startkey`).
    pub fn get_any<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &str)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }

    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ApiError::query(format!(
                "Invalid boolean parameter {key}: {other:?}"
            ))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        if self.get(key).is_some() {
            self.bool(key)
        } else {
            Ok(default)
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::query(format!("Invalid value for integer {key}: {v:?}")))
            })
            .transpose()
    }

    pub fn millis(&self, key: &str) -> Result<Option<Duration>, ApiError> {
        Ok(self.u64(key)?.map(Duration::from_millis))
    }

    /// A JSON-valued parameter (`startkey="a"`, `keys=[...]`, `open_revs=[...]`).
    pub fn json<T: DeserializeOwned>(&self, key: &str, value: &str) -> Result<T, ApiError> {
        serde_json::from_str(value)
            .map_err(|_| ApiError::query(format!("Invalid JSON value for {key}: {value:?}")))
    }

    /// A JSON string parameter, accepting either spelling of the key.
    pub fn json_string(&self, keys: &[&str]) -> Result<Option<String>, ApiError> {
        self.get_any(keys)
            .map(|(k, v)| self.json::<String>(k, v))
            .transpose()
    }
}
