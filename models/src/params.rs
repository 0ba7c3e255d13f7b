//! Typed reads of an analyzer's `params` table (JSON from `config/fleet.toml`) with named
//! defaults; a value of the wrong type is an error that names the key, never a silent default.

use crate::error::ModelError;

pub struct Params<'a> {
    analyzer: &'a str,
    value: &'a serde_json::Value,
}

impl<'a> Params<'a> {
    pub fn new(analyzer: &'a str, value: &'a serde_json::Value) -> Self {
        Self { analyzer, value }
    }

    pub fn analyzer(&self) -> &str {
        self.analyzer
    }

    pub fn raw(&self) -> &serde_json::Value {
        self.value
    }

    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, want: &str) -> ModelError {
        ModelError::param(
            &format!("{}.{key}", self.analyzer),
            format!("must be {want}"),
        )
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(key, "a number")),
        }
    }

    pub fn f32(&self, key: &str, default: f32) -> Result<f32, ModelError> {
        self.f64(key, default as f64).map(|v| v as f32)
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(key, "a whole number")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "true or false")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ModelError> {
        match self.value.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a string")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(key, "a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "a list of strings")),
        }
    }

    pub fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a list of numbers")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "a list of numbers")),
        }
    }
}
