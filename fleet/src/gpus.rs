//! `fleet gpus`: the NVIDIA devices NVML sees, as `--gpu` takes them (index or UUID), and
//! which running worker holds each (the workers' registrations in Redis).

use std::path::Path;
use std::time::Duration;

use common::store::WorkerInfo;
use gpu::{DeviceInfo, GpuError};

use crate::{render, settings};

const GIB: f64 = (1u64 << 30) as f64;

pub async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    match gpu::list_devices() {
        Ok(devices) if devices.is_empty() => {
            anyhow::bail!(
                "the NVIDIA driver is loaded but reports no GPUs: check `nvidia-smi` and the container's device access"
            )
        }
        Ok(devices) => {
            let workers = match registered_workers(config).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("fleet gpus: workers not shown ({e:#})");
                    Vec::new()
                }
            };
            print!("{}", table(&devices, &workers));
            Ok(())
        }
        Err(GpuError::NoDriver { .. }) => anyhow::bail!(
            "no NVIDIA driver on this machine (libnvidia-ml.so not found): install the driver to use GPUs; workers can run GPU stages on the CPU with --allow-cpu-fallback"
        ),
        Err(e) => anyhow::bail!("cannot list GPUs: {}", crate::error::root_cause(&e)),
    }
}

/// The workers registered under the config's prefix (Redis within a few seconds, or an error).
async fn registered_workers(config: Option<&Path>) -> anyhow::Result<Vec<WorkerInfo>> {
    let loaded = settings::load(config, false)?;
    let c = &loaded.config.connections;
    let read = async {
        let store =
            common::Store::connect(&c.redis_url, &c.prefix, loaded.config.result_ttl).await?;
        store.workers().await
    };
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("Redis at {} did not answer within 5 s", c.redis_url),
    }
}

/// Names of the workers pinned to `uuid`.
fn holders(uuid: &str, workers: &[WorkerInfo]) -> String {
    let names: Vec<&str> = workers
        .iter()
        .filter(|w| {
            w.gpu_uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
        })
        .map(|w| w.name.as_str())
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

pub fn table(devices: &[DeviceInfo], workers: &[WorkerInfo]) -> String {
    let mut t = render::table(&[
        "index",
        "name",
        "uuid",
        "memory used / total",
        "util",
        "temp",
        "worker",
    ]);
    for d in devices {
        let pct = if d.memory_total_bytes > 0 {
            100.0 * d.memory_used_bytes as f64 / d.memory_total_bytes as f64
        } else {
            0.0
        };
        t.add_row(vec![
            d.index.to_string(),
            d.name.clone(),
            d.uuid.clone(),
            format!(
                "{:.1} / {:.1} GiB ({pct:.0}%)",
                d.memory_used_bytes as f64 / GIB,
                d.memory_total_bytes as f64 / GIB
            ),
            d.utilization_percent
                .map_or_else(|| "-".into(), |u| format!("{u}%")),
            d.temperature_celsius
                .map_or_else(|| "-".into(), |c| format!("{c}°C")),
            holders(&d.uuid, workers),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_render_with_memory_in_gib() {
        let d = DeviceInfo {
            index: 0,
            uuid: "GPU-1234".into(),
            name: "Quadro RTX 8000".into(),
            memory_used_bytes: 12 << 30,
            memory_total_bytes: 48 << 30,
            utilization_percent: Some(37),
            temperature_celsius: None,
        };
        let mut other = d.clone();
        other.index = 1;
        other.uuid = "GPU-5678".into();
        let w = |name: &str, uuid: Option<&str>| WorkerInfo {
            name: name.into(),
            class: "gpu".into(),
            host: "h".into(),
            pid: 1,
            gpu_uuid: uuid.map(Into::into),
            gpu_index: None,
            cuda_device_id: None,
            started_at_ms: 0,
        };
        let workers = [
            w("gpu0@h:1", Some("gpu-1234")),
            w("cpu@h:2", None),
            w("gpu9@elsewhere:3", Some("GPU-9999")),
        ];
        let t = table(&[d, other], &workers);
        for cell in [
            "Quadro RTX 8000",
            "GPU-1234",
            "12.0 / 48.0 GiB (25%)",
            "37%",
            "gpu0@h:1",
        ] {
            assert!(t.contains(cell), "{cell} missing in\n{t}");
        }
        let second = t.lines().find(|l| l.contains("GPU-5678")).unwrap();
        let last = second.trim_end().trim_end_matches('│').trim_end();
        assert!(last.ends_with('-'), "nobody holds GPU 1: {second}");
        assert!(!t.contains("cpu@h:2") && !t.contains("elsewhere"), "{t}");
    }
}
