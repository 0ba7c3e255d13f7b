//! `fleet gpus`: the NVIDIA devices NVML sees, as `--gpu` takes them (index or UUID).

use gpu::{DeviceInfo, GpuError};

use crate::render;

const GIB: f64 = (1u64 << 30) as f64;

pub fn run() -> anyhow::Result<()> {
    match gpu::list_devices() {
        Ok(devices) if devices.is_empty() => {
            anyhow::bail!(
                "the NVIDIA driver is loaded but reports no GPUs: check `nvidia-smi` and the container's device access"
            )
        }
        Ok(devices) => {
            print!("{}", table(&devices));
            Ok(())
        }
        Err(GpuError::NoDriver { .. }) => anyhow::bail!(
            "no NVIDIA driver on this machine (libnvidia-ml.so not found): install the driver to use GPUs; workers can run GPU stages on the CPU with --allow-cpu-fallback"
        ),
        Err(e) => anyhow::bail!("cannot list GPUs: {}", crate::error::root_cause(&e)),
    }
}

pub fn table(devices: &[DeviceInfo]) -> String {
    let mut t = render::table(&[
        "index",
        "name",
        "uuid",
        "memory used / total",
        "util",
        "temp",
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
        let t = table(&[d]);
        for cell in [
            "Quadro RTX 8000",
            "GPU-1234",
            "12.0 / 48.0 GiB (25%)",
            "37%",
        ] {
            assert!(t.contains(cell), "{cell} missing in\n{t}");
        }
    }
}
