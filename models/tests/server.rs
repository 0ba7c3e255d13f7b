//! The model-server clients against a local HTTP server (127.0.0.1) that checks what they send
//! and answers with canned bodies, slow answers, 500s and garbage.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use media::{Audio, FrameSpec, Frames};
use models::server::{self, ServerError, ServerParams};
use models::{ErrorClass, Params};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
struct Canned {
    status: u16,
    body: String,
    delay: Duration,
}

fn ok(body: Value) -> Canned {
    Canned {
        status: 200,
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Serves the canned answers in order (the last one repeats), recording every request.
async fn serve(answers: Vec<Canned>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let canned = answers[n.min(answers.len() - 1)].clone();
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let header_end = loop {
                    let k = sock.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                let req = Request {
                    head: head.clone(),
                    body: Vec::new(),
                };
                let len: usize = req
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < header_end + len {
                    let k = sock.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                log.lock().expect("log").push(Request {
                    head,
                    body: buf[header_end..].to_vec(),
                });
                tokio::time::sleep(canned.delay).await;
                let reply = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    canned.status,
                    canned.body.len(),
                    canned.body
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

fn params(endpoint: &str, extra: Value) -> ServerParams {
    let mut p = json!({ "endpoint": endpoint, "timeout_s": 5.0, "retries": 0 });
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    ServerParams::from_params(
        &Params::new("qwen2_vl_temporal", &p),
        "Qwen/Qwen2-VL-7B-Instruct",
    )
    .expect("params")
}

fn frames() -> Frames {
    let colours = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255]];
    Frames {
        spec: FrameSpec::at_fps(1000, 32),
        width: 32,
        height: 24,
        times: vec![0.0, 1.0, 2.0],
        data: colours.iter().flat_map(|c| c.repeat(32 * 24)).collect(),
    }
}

#[tokio::test]
async fn chat_sends_frames_as_jpeg_parts_and_parses_the_json_answer() {
    let content =
        "Here you go:\n```json\n{\"scenes\": [{\"t\": 0.0, \"summary\": \"red screen\"}]}\n```";
    let (url, seen) = serve(vec![ok(json!({
        "model": "qwen2-vl",
        "choices": [{ "message": { "role": "assistant", "content": content } }],
        "usage": { "prompt_tokens": 900, "completion_tokens": 20 },
    }))])
    .await;
    let sp = params(
        &format!("{url}/v1"),
        json!({ "model": "qwen2-vl", "api_key_env": "HOME" }),
    );
    let fr = frames();
    let out = server::chat_frames(
        &server::client(),
        &sp,
        &fr,
        &[0, 1, 2],
        "Describe the scenes as JSON.",
        256,
    )
    .await
    .expect("answer");
    assert_eq!(out["answer"]["scenes"][0]["summary"], "red screen");
    assert_eq!(out["frames_sent"], 3);
    assert_eq!(out["usage"]["prompt_tokens"], 900);

    let req = seen.lock().expect("log")[0].clone();
    assert!(
        req.head.starts_with("POST /v1/chat/completions "),
        "{}",
        req.head
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!(
            "Bearer {}",
            std::env::var("HOME").unwrap_or_default()
        ))
    );
    let body: Value = serde_json::from_slice(&req.body).expect("JSON request");
    assert_eq!(body["model"], "qwen2-vl");
    let parts = body["messages"][0]["content"]
        .as_array()
        .expect("content parts");
    assert_eq!(parts.len(), 4);
    let text = parts[0]["text"].as_str().expect("text part");
    assert!(
        text.starts_with("Describe the scenes as JSON.") && text.contains("0.0s, 1.0s, 2.0s"),
        "{text}"
    );
    for part in &parts[1..] {
        let url = part["image_url"]["url"].as_str().expect("image url");
        let b64 = url
            .strip_prefix("data:image/jpeg;base64,")
            .expect("jpeg data url");
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    }
}

#[tokio::test]
async fn transcription_posts_a_wav_and_returns_text_segments_language() {
    let (url, seen) = serve(vec![ok(json!({
        "text": " Hello world. ", "language": "english", "duration": 2.0,
        "segments": [{ "id": 0, "start": 0.1, "end": 1.4, "text": " Hello world.", "avg_logprob": -0.2 }],
    }))])
    .await;
    let sp = params(&url, json!({ "model": "whisper-large-v3" }));
    let audio = Audio {
        sample_rate: 16_000,
        samples: vec![0.0; 32_000],
    };
    let out = server::transcribe(&server::client(), &sp, &audio, None)
        .await
        .expect("answer");
    assert_eq!(out["text"], "Hello world.");
    assert_eq!(out["language"], "english");
    assert_eq!(
        out["segments"],
        json!([{ "start": 0.1, "end": 1.4, "text": "Hello world." }])
    );

    let req = seen.lock().expect("log")[0].clone();
    assert!(
        req.head.starts_with("POST /v1/audio/transcriptions "),
        "{}",
        req.head
    );
    assert!(
        req.header("content-type")
            .unwrap_or_default()
            .starts_with("multipart/form-data")
    );
    let body = String::from_utf8_lossy(&req.body);
    assert!(
        body.contains("name=\"model\"\r\n\r\nwhisper-large-v3"),
        "{body:.300}"
    );
    assert!(body.contains("name=\"response_format\"\r\n\r\nverbose_json"));
    assert!(body.contains("filename=\"audio.wav\""));
    let riff = req
        .body
        .windows(4)
        .position(|w| w == b"RIFF")
        .expect("a WAV file part");
    // 44-byte header + 2 bytes per sample.
    let size = u32::from_le_bytes(req.body[riff + 4..riff + 8].try_into().expect("4 bytes"));
    assert_eq!(size, 36 + 64_000);
}

#[tokio::test]
async fn a_slow_server_is_a_retryable_timeout() {
    let (url, _) = serve(vec![Canned {
        status: 200,
        body: "{}".into(),
        delay: Duration::from_secs(3),
    }])
    .await;
    let sp = params(&url, json!({ "timeout_s": 0.3 }));
    let err = server::transcribe(
        &server::client(),
        &sp,
        &Audio {
            sample_rate: 16_000,
            samples: vec![0.0; 1600],
        },
        None,
    )
    .await
    .expect_err("times out");
    assert!(matches!(err, ServerError::Timeout { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retry);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_as_retryable() {
    let (url, seen) = serve(vec![Canned {
        status: 500,
        body: "{\"error\":\"CUDA out of memory\"}".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let sp = params(&url, json!({ "retries": 1 }));
    let err = server::chat_frames(&server::client(), &sp, &frames(), &[0], "x", 16)
        .await
        .expect_err("500");
    assert!(
        matches!(err, ServerError::Status { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("CUDA out of memory"), "{err}");
    assert_eq!(err.class(), ErrorClass::Retry);
    assert_eq!(seen.lock().expect("log").len(), 2, "one retry");
}

#[tokio::test]
async fn garbage_and_client_errors_are_permanent() {
    let (url, _) = serve(vec![Canned {
        status: 200,
        body: "<html>gateway</html>".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let err = server::chat_frames(
        &server::client(),
        &params(&url, json!({})),
        &frames(),
        &[0],
        "x",
        16,
    )
    .await
    .expect_err("garbage");
    assert!(
        matches!(err, ServerError::Garbage { .. }) && err.class() == ErrorClass::Fail,
        "{err}"
    );

    let prose = json!({ "choices": [{ "message": { "content": "I cannot describe videos." } }] });
    let (url, _) = serve(vec![ok(prose)]).await;
    let err = server::chat_frames(
        &server::client(),
        &params(&url, json!({})),
        &frames(),
        &[0],
        "x",
        16,
    )
    .await
    .expect_err("no JSON");
    assert!(
        err.to_string().contains("I cannot describe videos."),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fail);

    let (url, _) = serve(vec![ok(json!({ "segments": [] }))]).await;
    let err = server::transcribe(
        &server::client(),
        &params(&url, json!({})),
        &Audio {
            sample_rate: 16_000,
            samples: vec![0.0; 160],
        },
        None,
    )
    .await
    .expect_err("no text");
    assert_eq!(err.class(), ErrorClass::Fail, "{err}");

    let (url, _) = serve(vec![Canned {
        status: 400,
        body: "{\"error\":\"bad model\"}".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let err = server::chat_frames(
        &server::client(),
        &params(&url, json!({})),
        &frames(),
        &[0],
        "x",
        16,
    )
    .await
    .expect_err("400");
    assert_eq!(err.class(), ErrorClass::Fail, "{err}");
}

#[test]
fn no_endpoint_means_skipped() {
    let err = ServerParams::from_params(
        &Params::new("speech_transcription", &json!({})),
        "whisper-1",
    )
    .expect_err("no endpoint");
    assert_eq!(err.class(), ErrorClass::Skip);
    assert_eq!(
        err.to_string(),
        "no endpoint configured (set params.endpoint in config/fleet.toml)"
    );
    let sp = ServerParams::from_params(
        &Params::new("x", &json!({ "endpoint": "http://h:8000/" })),
        "m",
    )
    .expect("ok");
    assert_eq!(
        sp.url("chat/completions"),
        "http://h:8000/v1/chat/completions"
    );
}
