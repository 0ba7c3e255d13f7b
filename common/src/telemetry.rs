//! Logging/tracing setup and W3C trace context in AMQP headers.

use lapin::BasicProperties;
use lapin::types::FieldTable;

use crate::broker::{header_str, set_header};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Installs the `tracing` subscriber (RUST_LOG filter, default `info`).
pub fn init(service: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
    tracing::debug!(service, "telemetry initialised");
}

/// W3C trace context carried with a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceContext {
    pub fn from_props(props: &BasicProperties) -> Self {
        Self { traceparent: header_str(props, TRACEPARENT), tracestate: header_str(props, TRACESTATE) }
    }

    pub fn inject(&self, headers: &mut FieldTable) {
        if let Some(tp) = &self.traceparent {
            set_header(headers, TRACEPARENT, tp);
        }
        if let Some(ts) = &self.tracestate {
            set_header(headers, TRACESTATE, ts);
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT (what `main` hands to `run`).
pub async fn shutdown_on_signals(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}
