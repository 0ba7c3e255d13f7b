//! The broker's own limit on this machine (confirmed persistent publishes to a quorum
//! queue, consumed and acked one by one), and CPU accounting by process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use super::{Latency, percentiles};

/// Raw message size: about a MessagePack task message.
const RAW_BODY_BYTES: usize = 200;

pub struct RawRun {
    pub msgs: usize,
    pub secs: f64,
    pub latency: Latency,
    pub cpu: CpuUse,
}

/// The broker's own limit: confirmed persistent publishes to a quorum queue, consumed and
/// acked one by one, `window` confirms outstanding.
pub async fn raw_loop(
    url: &str,
    queue: &str,
    n: usize,
    window: usize,
    prefetch: u16,
) -> anyhow::Result<RawRun> {
    let pconn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("fleet-bench-raw-pub".into()),
    )
    .await?;
    let cconn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("fleet-bench-raw-sub".into()),
    )
    .await?;
    let pch = pconn.create_channel().await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    pch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    pch.queue_purge(queue.into(), Default::default()).await?;
    let cch = cconn.create_channel().await?;
    cch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let mut consumer = cch
        .basic_consume(
            queue.into(),
            "fleet-bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let clock = Instant::now();
    let consume = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let Some(Ok(d)) = consumer.next().await else {
                break;
            };
            let sent = u64::from_le_bytes(d.data[..8].try_into().unwrap_or([0; 8]));
            d.ack(BasicAckOptions::default()).await?;
            lat.push((clock.elapsed().as_micros() as u64).saturating_sub(sent) as f64 / 1000.0);
        }
        anyhow::Ok((lat, clock.elapsed()))
    });
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/msgpack".into());
    let mut pending = FuturesUnordered::new();
    let cpu0 = CpuUse::sample();
    let started = clock.elapsed();
    for _ in 0..n {
        while pending.len() >= window.max(1) {
            if let Some(c) = pending.next().await {
                c?;
            }
        }
        let mut body = vec![0u8; RAW_BODY_BYTES];
        body[..8].copy_from_slice(&(clock.elapsed().as_micros() as u64).to_le_bytes());
        pending.push(
            pch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await?,
        );
    }
    while let Some(c) = pending.next().await {
        c?;
    }
    let (lat, ended) = tokio::time::timeout(Duration::from_secs(120), consume).await???;
    let cpu = CpuUse::sample().since(&cpu0);
    anyhow::ensure!(lat.len() == n, "raw loop: consumed {} of {n}", lat.len());
    pch.queue_delete(queue.into(), Default::default()).await?;
    let _ = pconn.close(200, "bye".into()).await;
    let _ = cconn.close(200, "bye".into()).await;
    Ok(RawRun {
        msgs: n,
        secs: (ended - started).as_secs_f64(),
        latency: percentiles(lat),
        cpu,
    })
}

/// CPU seconds used by this process (fleet and driver), RabbitMQ and Redis.
#[derive(Debug, Default, Clone)]
pub struct CpuUse {
    by: BTreeMap<&'static str, f64>,
}

impl CpuUse {
    fn ticks(pid: &str) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    }

    pub fn sample() -> CpuUse {
        let mut by = BTreeMap::new();
        by.insert("fleet-bench", Self::ticks("self").unwrap_or(0.0) / 100.0);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let pid = e.file_name().to_string_lossy().into_owned();
                let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                    continue;
                };
                let name = match comm.trim() {
                    "beam.smp" => "rabbitmq",
                    "redis-server" => "redis",
                    _ => continue,
                };
                *by.entry(name).or_default() += Self::ticks(&pid).unwrap_or(0.0) / 100.0;
            }
        }
        CpuUse { by }
    }

    pub fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            by: self
                .by
                .iter()
                .map(|(k, v)| (*k, v - before.by.get(k).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    pub fn per_task_ms(&self, tasks: usize) -> String {
        self.by
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", v * 1000.0 / tasks as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
