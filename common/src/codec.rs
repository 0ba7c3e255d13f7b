//! The only place that calls rmp-serde. Fleet processes talk MessagePack; the intake also
//! reads JSON, chosen by the AMQP content type.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::{JobRequest, SCHEMA_VERSION};

pub const MSGPACK: &str = "application/msgpack";
pub const JSON: &str = "application/json";

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed MessagePack: {0}")]
    MsgPack(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unsupported content type {0:?}: use application/json or application/msgpack")]
    ContentType(String),
    #[error("schema version {0} is newer than this build understands ({SCHEMA_VERSION})")]
    Version(u16),
    #[error("could not encode: {0}")]
    Encode(String),
}

/// Encodes a fleet-internal message. Struct fields are named so readers can add fields.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::MsgPack(e.to_string()))
}

/// Decodes a job request by content type. A missing content type is sniffed: JSON starts
/// with `{` (after whitespace), anything else is tried as MessagePack.
pub fn decode_job_request(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<JobRequest, CodecError> {
    let ct = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let is_json = match ct.as_deref() {
        Some("application/json") | Some("text/json") => true,
        Some("application/msgpack")
        | Some("application/x-msgpack")
        | Some("application/vnd.msgpack") => false,
        Some("") | None => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        Some(other) => return Err(CodecError::ContentType(other.to_string())),
    };
    let req: JobRequest = if is_json {
        serde_json::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))?
    } else {
        rmp_serde::from_slice(body).map_err(|e| CodecError::MsgPack(e.to_string()))?
    };
    if let Some(v) = req.v
        && v > SCHEMA_VERSION
    {
        return Err(CodecError::Version(v));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::TaskMessage;

    #[test]
    fn json_and_msgpack_requests_decode_alike() {
        let json = br#"{"video": "/v.mp4", "analyzers": ["cut_analysis"], "metadata": {"a": 1}}"#;
        let a = decode_job_request(Some("application/json"), json).unwrap();
        let packed = rmp_serde::to_vec_named(&a).unwrap();
        let b = decode_job_request(Some("application/msgpack"), &packed).unwrap();
        assert_eq!(a, b);
        assert_eq!(decode_job_request(None, json).unwrap(), a);
        assert_eq!(
            a.analyzers.as_deref(),
            Some(&["cut_analysis".to_string()][..])
        );
    }

    #[test]
    fn bad_requests_say_why() {
        let e = decode_job_request(Some("application/json"), b"{\"vid\": 1}").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = decode_job_request(Some("text/plain"), b"x").unwrap_err();
        assert!(matches!(e, CodecError::ContentType(_)));
        let e = decode_job_request(Some("application/json"), br#"{"v": 99, "video": "x"}"#)
            .unwrap_err();
        assert!(matches!(e, CodecError::Version(99)));
        let e = decode_job_request(Some("application/json"), b"{}").unwrap_err();
        assert!(e.to_string().contains("video"), "{e}");
    }

    #[test]
    fn task_roundtrip() {
        let t = TaskMessage {
            v: SCHEMA_VERSION,
            job_id: "j".into(),
            analyzer: "a".into(),
            stage: "cpu".into(),
            video: "/v".into(),
            inputs: vec!["b".into()],
            published_at_ms: 5,
        };
        let back: TaskMessage = decode(&encode(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
