//! Model servers over HTTP (OpenAI-compatible, e.g. vLLM serving Qwen2-VL, or a Whisper
//! server): `qwen2_vl_temporal` / `streaming_dense_captioning` send sampled frames to
//! `/v1/chat/completions`, `speech_transcription` sends a WAV to `/v1/audio/transcriptions`.

use std::time::Duration;

use base64::Engine;
use media::{Audio, Frames};
use serde_json::{Value, json};

use crate::error::ErrorClass;
use crate::params::Params;

/// The HTTP client type, so callers need no `reqwest` dependency of their own.
pub use reqwest::Client;

pub const DEFAULT_TIMEOUT_S: f64 = 120.0;
pub const DEFAULT_RETRIES: usize = 2;
/// Frames sent per request: Qwen2-VL handles a handful of images per prompt well.
pub const DEFAULT_MAX_FRAMES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no endpoint configured (set params.endpoint in config/fleet.toml)")]
    NoEndpoint,
    #[error("invalid analyzer parameter {0}")]
    BadParam(String),
    #[error("{url} did not answer within {secs} s")]
    Timeout { url: String, secs: f64 },
    #[error("{url} unreachable: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not {expected}: {detail}")]
    Garbage {
        url: String,
        expected: &'static str,
        detail: String,
    },
}

impl ServerError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ServerError::NoEndpoint => ErrorClass::Skip,
            ServerError::Timeout { .. } | ServerError::Connect { .. } => ErrorClass::Retry,
            // Overloaded or failing servers may recover; a 4xx means our request is wrong.
            ServerError::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retry
            }
            _ => ErrorClass::Fail,
        }
    }
}

/// Endpoint settings from an analyzer's params.
#[derive(Debug, Clone)]
pub struct ServerParams {
    pub endpoint: String,
    pub model: String,
    pub timeout: Duration,
    pub retries: usize,
    pub api_key: Option<String>,
}

impl ServerParams {
    /// `endpoint`, `model`, `timeout_s`, `retries`, and `api_key_env` (the name of an
    /// environment variable holding a bearer token; keys never live in the config file).
    pub fn from_params(p: &Params, default_model: &str) -> Result<Self, ServerError> {
        let bad = |e: crate::ModelError| ServerError::BadParam(e.to_string());
        let endpoint = p
            .str("endpoint")
            .map_err(bad)?
            .filter(|s| !s.trim().is_empty())
            .ok_or(ServerError::NoEndpoint)?;
        let timeout = p.f64("timeout_s", DEFAULT_TIMEOUT_S).map_err(bad)?;
        if timeout.is_nan() || timeout <= 0.0 {
            return Err(ServerError::BadParam(format!(
                "{}.timeout_s must be positive",
                p.analyzer()
            )));
        }
        let api_key = match p.str("api_key_env").map_err(bad)? {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                ServerError::BadParam(format!(
                    "{}.api_key_env names {var}, which is not set",
                    p.analyzer()
                ))
            })?),
            None => None,
        };
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            model: p
                .str("model")
                .map_err(bad)?
                .unwrap_or(default_model)
                .to_string(),
            timeout: Duration::from_secs_f64(timeout),
            retries: p.usize("retries", DEFAULT_RETRIES).map_err(bad)?,
            api_key,
        })
    }

    /// `endpoint` + `/v1/<path>`, accepting endpoints given with or without `/v1` or the full path.
    pub fn url(&self, path: &str) -> String {
        let e = &self.endpoint;
        if e.ends_with(path) {
            e.clone()
        } else if e.ends_with("/v1") {
            format!("{e}/{path}")
        } else {
            format!("{e}/v1/{path}")
        }
    }
}

/// A client per call site is cheap; the connection pool is per `Client`, so callers keep one.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends `make()` with retries on transient failures (exponential backoff from 0.5 s) and
/// returns the JSON body.
async fn send_json(
    sp: &ServerParams,
    url: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Value, ServerError> {
    let mut attempt = 0;
    loop {
        let mut req = make().timeout(sp.timeout);
        if let Some(key) = &sp.api_key {
            req = req.bearer_auth(key);
        }
        let result = match req.send().await {
            Err(e) if e.is_timeout() => Err(ServerError::Timeout {
                url: url.to_string(),
                secs: sp.timeout.as_secs_f64(),
            }),
            Err(e) => Err(ServerError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            }),
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Err(e) if e.is_timeout() => Err(ServerError::Timeout {
                        url: url.to_string(),
                        secs: sp.timeout.as_secs_f64(),
                    }),
                    Err(e) => Err(ServerError::Connect {
                        url: url.to_string(),
                        reason: e.to_string(),
                    }),
                    Ok(body) if !status.is_success() => Err(ServerError::Status {
                        url: url.to_string(),
                        status: status.as_u16(),
                        body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                    }),
                    Ok(body) => serde_json::from_slice(&body).map_err(|e| ServerError::Garbage {
                        url: url.to_string(),
                        expected: "JSON",
                        detail: format!(
                            "{e}; body starts {:?}",
                            String::from_utf8_lossy(&body)
                                .chars()
                                .take(120)
                                .collect::<String>()
                        ),
                    }),
                }
            }
        };
        match result {
            Err(e) if e.class() == ErrorClass::Retry && attempt < sp.retries => {
                attempt += 1;
                tracing::warn!(url, attempt, error = %e, "model server failed, retrying");
                tokio::time::sleep(Duration::from_millis(500 << (attempt - 1).min(5))).await;
            }
            other => return other,
        }
    }
}

/// Picks up to `max` frames spread evenly over the video.
pub fn pick_frames(frames: &Frames, max: usize) -> Vec<usize> {
    let n = frames.len();
    if n <= max {
        return (0..n).collect();
    }
    (0..max).map(|i| (i * (n - 1)) / (max - 1).max(1)).collect()
}

/// A frame as a `data:` URL (JPEG), what OpenAI-compatible vision endpoints take.
pub fn jpeg_data_url(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<String, String> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(buf)
    ))
}

/// Sends sampled frames with their times and `prompt` to the chat endpoint and parses the
/// answer as JSON (the prompt asks for JSON; a model that wraps it in prose or a code fence
/// is tolerated, one that gives no JSON object at all is an error).
pub async fn chat_frames(
    http: &reqwest::Client,
    sp: &ServerParams,
    frames: &Frames,
    picks: &[usize],
    prompt: &str,
    max_tokens: usize,
) -> Result<Value, ServerError> {
    let url = sp.url("chat/completions");
    let times: Vec<String> = picks
        .iter()
        .map(|&i| format!("{:.1}s", frames.times[i]))
        .collect();
    let mut content = vec![json!({
        "type": "text",
        "text": format!("{prompt}\n\nThe {} images are frames of one video at these times: {}.", picks.len(), times.join(", ")),
    })];
    for &i in picks {
        let url = jpeg_data_url(frames.frame(i), frames.width, frames.height, 85)
            .map_err(|e| ServerError::BadParam(format!("frame {i} could not be encoded: {e}")))?;
        content.push(json!({ "type": "image_url", "image_url": { "url": url } }));
    }
    let body = json!({
        "model": sp.model,
        "messages": [{ "role": "user", "content": content }],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    });
    let answer = send_json(sp, &url, || http.post(&url).json(&body)).await?;
    let garbage = |detail: String| ServerError::Garbage {
        url: url.clone(),
        expected: "a chat completion",
        detail,
    };
    let text = answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            garbage(format!(
                "no choices[0].message.content in {}",
                short(&answer)
            ))
        })?;
    let parsed = extract_json(text).ok_or_else(|| ServerError::Garbage {
        url: url.clone(),
        expected: "a JSON object in the model's answer",
        detail: text.chars().take(200).collect(),
    })?;
    Ok(json!({
        "answer": parsed,
        "model": answer.get("model").cloned().unwrap_or(json!(sp.model)),
        "frames_sent": picks.len(),
        "frame_times": picks.iter().map(|&i| frames.times[i]).collect::<Vec<_>>(),
        "usage": answer.get("usage").cloned().unwrap_or(Value::Null),
    }))
}

/// The first JSON object in a model's answer, skipping prose and code fences.
pub fn extract_json(text: &str) -> Option<Value> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start)
        .then(|| serde_json::from_str::<Value>(&text[start..=end]).ok())
        .flatten()
        .filter(Value::is_object)
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// 16-bit PCM mono WAV of the audio (what every transcription server reads).
pub fn wav_bytes(audio: &Audio) -> Vec<u8> {
    let data_len = (audio.samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&audio.sample_rate.to_le_bytes());
    out.extend_from_slice(&(audio.sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in &audio.samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

/// Transcribes the audio; returns `{ "text", "segments": [{"start","end","text"}], "language" }`.
pub async fn transcribe(
    http: &reqwest::Client,
    sp: &ServerParams,
    audio: &Audio,
    language: Option<&str>,
) -> Result<Value, ServerError> {
    let url = sp.url("audio/transcriptions");
    let wav = wav_bytes(audio);
    let make = || {
        let part = reqwest::multipart::Part::bytes(wav.clone())
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .expect("static mime type parses");
        let mut form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", sp.model.clone())
            .text("response_format", "verbose_json")
            .text("timestamp_granularities[]", "segment");
        if let Some(lang) = language {
            form = form.text("language", lang.to_string());
        }
        http.post(&url).multipart(form)
    };
    let answer = send_json(sp, &url, make).await?;
    let text = answer
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ServerError::Garbage {
            url: url.clone(),
            expected: "a transcription",
            detail: format!("no \"text\" in {}", short(&answer)),
        })?;
    let segments: Vec<Value> = answer
        .get("segments")
        .and_then(Value::as_array)
        .map(|segs| {
            segs.iter()
                .filter_map(|s| {
                    Some(json!({
                        "start": s.get("start")?.as_f64()?,
                        "end": s.get("end")?.as_f64()?,
                        "text": s.get("text")?.as_str()?.trim(),
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "text": text.trim(),
        "segments": segments,
        "language": answer.get("language").cloned().unwrap_or(language.map_or(Value::Null, |l| json!(l))),
        "model": sp.model,
    }))
}
