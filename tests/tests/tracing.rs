//! One job, one trace across processes: the dispatcher, a GPU worker and a CPU worker run as
//! binaries exporting OTLP/HTTP to a receiver inside this test. The job is submitted with a
//! caller's `traceparent`; every span must continue that trace, link up without orphans,
//! and reach the receiver before the processes exit on SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use common::broker::persistent;
use common::codec::JSON;
use lapin::types::{AMQPValue, ByteArray, FieldTable, ShortString};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use tests::{AMQP_URL, Fleet, REDIS_URL, binary, config_path, eventually, free_addr};

/// A span as the receiver got it, with its process's resource attributes.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    host: Option<String>,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attrs: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

/// `POST /v1/traces` with an OTLP protobuf body, as Jaeger's 4318 port takes it.
async fn export(State(spans): State<Spans>, body: Bytes) -> impl IntoResponse {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut got = spans.lock().unwrap();
    for rs in req.resource_spans {
        let resource = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            got.push(Received {
                service: resource.get("service.name").cloned().unwrap_or_default(),
                host: resource.get("host.name").cloned(),
                name: span.name.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attrs: attrs(&span.attributes),
            });
        }
    }
    let ok = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], ok).into_response()
}

async fn start_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

/// A fleet binary as a child process, exporting traces to `endpoint`; killed if still
/// running when dropped.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(
        name: &'static str,
        bin: &str,
        args: &[&str],
        fleet: &Fleet,
        endpoint: &str,
        listen: &str,
    ) -> Process {
        let mut cmd = Command::new(binary(bin));
        // Only this test's telemetry settings: none inherited from the environment.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            cmd.env_remove(k);
        }
        cmd.args(args)
            .env("FLEET_CONFIG", config_path())
            .env("FLEET_PREFIX", &fleet.prefix)
            .env("FLEET_AMQP_URL", AMQP_URL)
            .env("FLEET_REDIS_URL", REDIS_URL)
            .env("FLEET_LISTEN", listen)
            .env("FLEET_METRICS_LISTEN", free_addr())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(tests::child_logs());
        Process {
            name,
            child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}")),
        }
    }

    /// SIGTERM, then the exit status (the processes flush their spans before exiting).
    async fn terminate(&mut self) -> Option<i32> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_across_processes() {
    let fleet = Fleet::new(|_| {}).await;
    let (endpoint, spans) = start_receiver().await;
    let api = free_addr();
    let mut procs = vec![
        Process::spawn("dispatcher", "dispatcher", &[], &fleet, &endpoint, &api),
        Process::spawn(
            "gpu worker",
            "worker",
            &[
                "--class",
                "gpu",
                "--name",
                "gpu-t",
                "--allow-cpu-fallback",
                "--synthetic-scale",
                "0.001",
            ],
            &fleet,
            &endpoint,
            &free_addr(),
        ),
        Process::spawn(
            "cpu worker",
            "worker",
            &[
                "--class",
                "cpu",
                "--name",
                "cpu-t",
                "--synthetic-scale",
                "0.001",
            ],
            &fleet,
            &endpoint,
            &free_addr(),
        ),
    ];
    let base = format!("http://{api}");
    eventually(
        Duration::from_secs(60),
        "dispatcher process /readyz",
        || async {
            fleet
                .http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        },
    )
    .await;

    // The caller (a Python pipeline's instrumentation) is mid-trace when it submits.
    let caller_trace = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let resp = fleet
        .http
        .post(format!("{base}/v1/jobs"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"video": "/videos/traced.mp4", "analyzers": ["temporal_flow", "audio_analysis"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    let job_id = body["job_id"].as_str().unwrap().to_string();
    let outcomes = fleet.wait_completed(&job_id, Duration::from_secs(60)).await;
    assert_eq!(
        outcomes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["audio_analysis", "cut_analysis", "temporal_flow"]
    );
    let stored_traceparent = fleet
        .job(&job_id)
        .await
        .unwrap()
        .traceparent
        .expect("the job hash has a traceparent");

    // Workers first (their notices are handled by then), the dispatcher last.
    for p in procs.iter_mut().rev() {
        assert_eq!(
            p.terminate().await,
            Some(0),
            "{} exits 0 on SIGTERM",
            p.name
        );
    }
    let spans = spans.lock().unwrap().clone();
    let listing = || {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {}",
                    s.service, s.name, s.span_id, s.parent_span_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // One trace: the caller's.
    assert!(!spans.is_empty(), "no span reached the receiver");
    for s in &spans {
        assert_eq!(
            s.trace_id,
            caller_trace,
            "span {} of {} is in another trace:\n{}",
            s.name,
            s.service,
            listing()
        );
        assert!(
            s.host.as_deref().is_some_and(|h| !h.is_empty()),
            "{} has no host.name",
            s.service
        );
    }
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["dispatcher", "worker-cpu", "worker-gpu"])
    );

    // No orphans: every parent is the caller's span or a span we received.
    let by_id: BTreeMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for s in &spans {
        assert!(
            s.parent_span_id == caller_span || by_id.contains_key(s.parent_span_id.as_str()),
            "span {} of {} has an unknown parent {:?}:\n{}",
            s.name,
            s.service,
            s.parent_span_id,
            listing()
        );
    }

    // The intake continues the caller and is the job's root, stored in Redis for later steps.
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let intake = named("intake");
    assert_eq!(intake.len(), 1, "{}", listing());
    let intake = intake[0];
    assert_eq!(
        (intake.service.as_str(), intake.parent_span_id.as_str()),
        ("dispatcher", caller_span.as_str())
    );
    assert_eq!(intake.attrs.get("job.id"), Some(&job_id));
    assert_eq!(
        stored_traceparent,
        format!("00-{caller_trace}-{}-01", intake.span_id)
    );

    // Each task runs in a worker under the dispatcher's publish span, with its child spans.
    let tasks = named("task");
    let analyzers: BTreeSet<&str> = tasks
        .iter()
        .filter_map(|t| t.attrs.get("analyzer").map(String::as_str))
        .collect();
    assert_eq!(
        analyzers,
        BTreeSet::from(["audio_analysis", "cut_analysis", "temporal_flow"]),
        "{}",
        listing()
    );
    for t in &tasks {
        let parent = by_id[t.parent_span_id.as_str()];
        assert_eq!(
            (parent.service.as_str(), parent.name.as_str()),
            ("dispatcher", "publish"),
            "parent of task {:?}",
            t.attrs
        );
        assert_eq!(parent.attrs.get("analyzer"), t.attrs.get("analyzer"));
        assert_eq!(t.attrs.get("job.id"), Some(&job_id));
        assert_eq!(t.attrs.get("outcome").map(String::as_str), Some("ok"));
        assert_eq!(t.attrs.get("attempt").map(String::as_str), Some("1"));
        let (stage, worker, service) = if t.attrs["analyzer"] == "cut_analysis" {
            ("stage4", "gpu-t", "worker-gpu")
        } else {
            ("cpu", "cpu-t", "worker-cpu")
        };
        assert_eq!(
            (
                t.attrs.get("stage").map(String::as_str),
                t.attrs.get("worker").map(String::as_str)
            ),
            (Some(stage), Some(worker))
        );
        assert_eq!(t.service, service);
        let children: BTreeSet<&str> = spans
            .iter()
            .filter(|c| c.parent_span_id == t.span_id)
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            ["analyze", "store", "notify"]
                .iter()
                .all(|c| children.contains(c)),
            "children of task {:?}: {children:?}",
            t.attrs
        );
    }

    // The notices come back to the dispatcher, which completes the job in the same trace.
    for o in named("outcome") {
        assert_eq!(o.service, "dispatcher");
        assert_eq!(by_id[o.parent_span_id.as_str()].name, "notify");
    }
    let complete = named("complete");
    assert_eq!(complete.len(), 1, "{}", listing());
    assert_eq!(
        complete[0].attrs.get("outcome").map(String::as_str),
        Some("completed")
    );
    assert_eq!(complete[0].attrs.get("job.id"), Some(&job_id));

    drop(procs);
    fleet.cleanup().await;
}

/// A caller's `traceparent` in an AMQP header sent as bytes (what pika does with a `bytes`
/// value) is continued too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_job_request_continues_a_traceparent_sent_as_bytes() {
    let fleet = Fleet::new(|_| {}).await;
    let (endpoint, spans) = start_receiver().await;
    let api = free_addr();
    let mut dispatcher = Process::spawn("dispatcher", "dispatcher", &[], &fleet, &endpoint, &api);
    eventually(
        Duration::from_secs(60),
        "dispatcher process /readyz",
        || async {
            fleet
                .http
                .get(format!("http://{api}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        },
    )
    .await;

    let caller_trace = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("traceparent"),
        AMQPValue::ByteArray(ByteArray::from(traceparent.into_bytes())),
    );
    let job_id = format!("amqp-{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::to_vec(
        &json!({"video": "/videos/traced.mp4", "analyzers": ["audio_analysis"]}),
    )
    .unwrap();
    let broker = fleet.broker().await;
    let props = persistent(JSON, headers).with_message_id(job_id.as_str().into());
    broker
        .publish("", &fleet.topology().jobs(), &body, props)
        .await
        .unwrap();
    broker.close().await;
    let meta = eventually(
        Duration::from_secs(30),
        "the job to be recorded",
        || async { fleet.job(&job_id).await },
    )
    .await;

    assert_eq!(dispatcher.terminate().await, Some(0));
    let spans = spans.lock().unwrap().clone();
    let intake = spans
        .iter()
        .find(|s| s.name == "intake")
        .expect("an intake span");
    assert_eq!(
        (intake.trace_id.as_str(), intake.parent_span_id.as_str()),
        (caller_trace.as_str(), caller_span.as_str())
    );
    assert_eq!(intake.attrs.get("job.id"), Some(&job_id));
    assert_eq!(
        meta.traceparent,
        Some(format!("00-{caller_trace}-{}-01", intake.span_id))
    );
    let publish = spans
        .iter()
        .find(|s| s.name == "publish")
        .expect("the task's publish span");
    assert_eq!(publish.trace_id, caller_trace);
    assert_eq!(
        publish.attrs.get("analyzer").map(String::as_str),
        Some("audio_analysis")
    );
    fleet.cleanup().await;
}
