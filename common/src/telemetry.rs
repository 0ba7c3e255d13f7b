//! Logging, tracing to an OTLP collector (Jaeger), and W3C trace context in AMQP headers.
//!
//! Every process installs the same subscriber: a `fmt` layer for logs (`RUST_LOG`) and an
//! OpenTelemetry layer that gives each span a W3C trace/span id. Spans are *exported* only
//! when an OTLP endpoint is configured (the standard `OTEL_EXPORTER_OTLP_*` variables);
//! without one there is no exporter and no background thread, but ids still flow through
//! the messages, so a caller's trace id survives the fleet either way.
//!
//! Invariant: a span that starts work for a message takes its parent from that message
//! ([`TraceContext::set_as_parent`]) *before* it is entered, and every publish carries the
//! context of the span it happens in ([`TraceContext::current`]), so one job is one trace
//! across processes.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::FieldTable;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::headers::{header_str, set_header};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Standard OpenTelemetry variables read here; the exporter reads the rest
/// (`OTEL_EXPORTER_OTLP_PROTOCOL`, `_HEADERS`, `_TIMEOUT`, ...) itself.
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const ENV_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The specification's default when no protocol variable is set.
const DEFAULT_PROTOCOL: &str = "http/protobuf";

/// Instrumentation scope name on every exported span.
const TRACER_NAME: &str = "analyzer-fleet";
/// How long process exit waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Targets whose spans are never exported: the exporter's own transport (exporting it would
/// trace the export itself) and the AMQP client's connection loop (a span per connection
/// lifetime, outside every job).
const NOT_TRACED: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "lapin",
    "amq_protocol",
];

/// Keeps span export alive; dropping it (or [`TelemetryGuard::shutdown`]) flushes the
/// spans still buffered, so call it at the end of `main`.
#[must_use = "dropping the guard stops span export; keep it until the end of main"]
pub struct TelemetryGuard {
    export: Option<Export>,
}

struct Export {
    provider: SdkTracerProvider,
    /// Exports run here, not on the application's runtime, so the final flush can block
    /// (in `Drop`, inside `async fn main`) without waiting on the runtime it blocks.
    runtime: tokio::runtime::Runtime,
}

impl TelemetryGuard {
    /// Flushes buffered spans to the collector (at most [`FLUSH_TIMEOUT`]) and stops export.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let Some(export) = self.export.take() else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let provider = export.provider.clone();
        std::thread::spawn(move || {
            let _ = tx.send(provider.shutdown());
        });
        match rx.recv_timeout(FLUSH_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing spans to the OTLP collector failed"),
            Err(_) => {
                tracing::warn!(timeout = ?FLUSH_TIMEOUT, "gave up flushing spans to the OTLP collector")
            }
        }
        export.runtime.shutdown_background();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Installs logging (`RUST_LOG`, default `info`) and tracing. `default_service` names the
/// process in traces unless `OTEL_SERVICE_NAME` is set (`dispatcher`, `worker-gpu`, `worker-cpu`).
pub fn init(default_service: &str) -> TelemetryGuard {
    let service = env_nonempty(ENV_SERVICE_NAME).unwrap_or_else(|| default_service.to_string());
    let endpoint = env_nonempty(ENV_TRACES_ENDPOINT).or_else(|| env_nonempty(ENV_ENDPOINT));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.clone())
        .with_attribute(opentelemetry::KeyValue::new("host.name", host_name()))
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let mut export = None;
    let mut problem = None;
    if endpoint.is_some() {
        match start_export() {
            Ok((processor, runtime)) => {
                provider = provider.with_span_processor(processor);
                export = Some(runtime);
            }
            Err(e) => problem = Some(e),
        }
    }
    let provider = provider.build();

    let logs = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    // Spans are traced whatever RUST_LOG says: the log level must not cut a trace apart.
    let traced = NOT_TRACED.iter().fold(
        Targets::new().with_default(LevelFilter::INFO),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    );
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(traced);
    // Colours only on a terminal: `fleet up` and log collectors read plain lines.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(logs);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    match (&endpoint, problem) {
        (Some(endpoint), None) => {
            let protocol = env_nonempty(ENV_TRACES_PROTOCOL)
                .or_else(|| env_nonempty(ENV_PROTOCOL))
                .unwrap_or_else(|| DEFAULT_PROTOCOL.into());
            tracing::info!(service, endpoint, protocol, "exporting traces over OTLP");
        }
        (Some(endpoint), Some(e)) => {
            tracing::error!(service, endpoint, error = %e, "OTLP exporter not started (check OTEL_EXPORTER_OTLP_*); traces are not exported");
        }
        (None, _) => tracing::debug!(
            service,
            "no OTEL_EXPORTER_OTLP_ENDPOINT: traces are not exported"
        ),
    }
    TelemetryGuard {
        export: export.map(|runtime| Export { provider, runtime }),
    }
}

/// The OTLP exporter (protocol, endpoint, headers and timeout from the standard variables)
/// behind a batch processor that runs on its own one-thread runtime.
fn start_export() -> Result<(BatchSpanProcessor<Tokio>, tokio::runtime::Runtime), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the export runtime: {e}"))?;
    // The gRPC channel and the batch task attach to the runtime that is current here.
    let entered = runtime.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    drop(entered);
    Ok((processor, runtime))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn host_name() -> String {
    env_nonempty("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// W3C trace context carried with a message (AMQP headers, the job hash's `traceparent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context a message arrived with (headers as strings or bytes).
    pub fn from_props(props: &BasicProperties) -> Self {
        let get = |name| {
            header_str(props, name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            traceparent: get(TRACEPARENT),
            tracestate: get(TRACESTATE),
        }
    }

    /// The context of the current span: what an outgoing message carries. Empty when no
    /// tracing layer is installed (e.g. a fleet embedded in tests).
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span` (starts it, so set its parent before).
    pub fn of(span: &tracing::Span) -> Self {
        let mut out = Self::default();
        TraceContextPropagator::new().inject_context(&span.context(), &mut out);
        out
    }

    /// `self` if it carries a traceparent, else `other`.
    pub fn or(self, other: Self) -> Self {
        if self.traceparent.is_some() {
            self
        } else {
            other
        }
    }

    /// Whether this is a well-formed W3C context (a malformed header counts as none).
    pub fn is_valid(&self) -> bool {
        self.otel_context().span().span_context().is_valid()
    }

    /// Makes this context the parent of `span`, which must not have been entered yet.
    /// Without a valid context `span` keeps its ordinary parent (or starts a trace).
    pub fn set_as_parent(&self, span: &tracing::Span) {
        let cx = self.otel_context();
        if cx.span().span_context().is_valid()
            && let Err(e) = span.set_parent(cx)
        {
            tracing::debug!(error = %e, "trace context not applied");
        }
    }

    fn otel_context(&self) -> opentelemetry::Context {
        TraceContextPropagator::new().extract(self)
    }

    /// Writes the headers this context has (and leaves the others as they are).
    pub fn inject(&self, headers: &mut FieldTable) {
        if let Some(tp) = &self.traceparent {
            set_header(headers, TRACEPARENT, tp);
        }
        if let Some(ts) = &self.tracestate {
            set_header(headers, TRACESTATE, ts);
        }
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

impl Injector for TraceContext {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT (what `main` hands to `run`).
pub async fn shutdown_on_signals(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_headers_are_parsed_and_checked() {
        let ok = TraceContext {
            traceparent: Some(PARENT.into()),
            tracestate: Some("vendor=1".into()),
        };
        assert!(ok.is_valid());
        assert!(!TraceContext::default().is_valid());
        let bad = TraceContext {
            traceparent: Some("00-zz-00f067aa0ba902b7-01".into()),
            tracestate: None,
        };
        assert!(!bad.is_valid());
        let all_zero = TraceContext {
            traceparent: Some(format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32))),
            tracestate: None,
        };
        assert!(!all_zero.is_valid());
    }

    #[test]
    fn headers_as_bytes_or_strings_are_read() {
        use lapin::types::{AMQPValue, ByteArray, ShortString};
        let mut h = FieldTable::default();
        h.insert(
            ShortString::from(TRACEPARENT),
            AMQPValue::ByteArray(ByteArray::from(PARENT.as_bytes().to_vec())),
        );
        set_header(&mut h, TRACESTATE, "vendor=1");
        let props = BasicProperties::default().with_headers(h);
        let cx = TraceContext::from_props(&props);
        assert_eq!(cx.traceparent.as_deref(), Some(PARENT));
        assert_eq!(cx.tracestate.as_deref(), Some("vendor=1"));
        let mut out = FieldTable::default();
        cx.inject(&mut out);
        assert_eq!(
            TraceContext::from_props(&BasicProperties::default().with_headers(out)),
            cx
        );
    }

    #[test]
    fn without_a_tracing_layer_the_current_context_is_empty() {
        assert_eq!(TraceContext::current(), TraceContext::default());
        let caller = TraceContext {
            traceparent: Some(PARENT.into()),
            tracestate: None,
        };
        assert_eq!(TraceContext::current().or(caller.clone()), caller);
    }
}
