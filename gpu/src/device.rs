//! Listing NVIDIA GPUs and pinning a worker to one of them.

use std::sync::Arc;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::Serialize;

use crate::GpuError;

/// A device and its readings at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// NVML index: PCI bus order, the order `nvidia-smi` lists.
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// None where the device does not report it (MIG slices, some vGPUs).
    pub utilization_percent: Option<u32>,
    pub temperature_celsius: Option<u32>,
}

/// How `--gpu` names a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Index(u32),
    Uuid(String),
}

impl Selector {
    /// Parses `0`, `1`, … or a `GPU-…` UUID (as `nvidia-smi -L` prints it).
    pub fn parse(selector: &str) -> Result<Selector, GpuError> {
        let s = selector.trim();
        if let Ok(index) = s.parse::<u32>() {
            Ok(Selector::Index(index))
        } else if has_gpu_prefix(s) {
            Ok(Selector::Uuid(s.to_owned()))
        } else {
            Err(GpuError::InvalidSelector(selector.to_owned()))
        }
    }
}

/// `GPU-` followed by something; `get` because the input may not be ASCII.
fn has_gpu_prefix(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("GPU-"))
}

/// Loads NVML, mapping a missing library or driver to [`GpuError::NoDriver`].
fn init() -> Result<Nvml, GpuError> {
    Nvml::init().map_err(|e| GpuError::nvml("init", e))
}

/// Reads one device; utilization and temperature are optional because not every device has them.
fn read(device: &Device<'_>) -> Result<DeviceInfo, GpuError> {
    let nvml = GpuError::nvml;
    let memory = device.memory_info().map_err(|e| nvml("memory_info", e))?;
    let optional = |r: Result<u32, NvmlError>| r.ok();
    Ok(DeviceInfo {
        index: device.index().map_err(|e| nvml("index", e))?,
        uuid: device.uuid().map_err(|e| nvml("uuid", e))?,
        name: device.name().map_err(|e| nvml("name", e))?,
        memory_used_bytes: memory.used,
        memory_total_bytes: memory.total,
        utilization_percent: optional(device.utilization_rates().map(|u| u.gpu)),
        temperature_celsius: optional(device.temperature(TemperatureSensor::Gpu)),
    })
}

fn all(nvml: &Nvml) -> Result<Vec<DeviceInfo>, GpuError> {
    let count = nvml
        .device_count()
        .map_err(|e| GpuError::nvml("device_count", e))?;
    (0..count)
        .map(|i| {
            let device = nvml
                .device_by_index(i)
                .map_err(|e| GpuError::nvml("device_by_index", e))?;
            read(&device)
        })
        .collect()
}

/// Every NVIDIA GPU NVML sees, with current memory, utilization and temperature.
pub fn list_devices() -> Result<Vec<DeviceInfo>, GpuError> {
    all(&init()?)
}

/// Pins this process to one GPU, named by NVML index or UUID.
pub fn select(selector: &str) -> Result<PinnedGpu, GpuError> {
    let wanted = Selector::parse(selector)?;
    let nvml = init()?;
    let devices = all(&nvml)?;
    let found = devices.iter().find(|d| match &wanted {
        Selector::Index(i) => d.index == *i,
        Selector::Uuid(u) => d.uuid.eq_ignore_ascii_case(u),
    });
    let Some(info) = found.cloned() else {
        let available = if devices.is_empty() {
            "no NVIDIA GPUs".to_owned()
        } else {
            let listed: Vec<String> = devices
                .iter()
                .map(|d| format!("{} ({}, {})", d.index, d.uuid, d.name))
                .collect();
            listed.join("; ")
        };
        return Err(GpuError::NotFound {
            selector: selector.to_owned(),
            available,
        });
    };
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let cuda_device_id = cuda_ordinal(visible.as_deref(), info.index, &info.uuid)?;
    let order = std::env::var("CUDA_DEVICE_ORDER").unwrap_or_default();
    if visible.is_none() && devices.len() > 1 && order != "PCI_BUS_ID" {
        // CUDA's default FASTEST_FIRST order may differ from NVML's PCI order on mixed cards.
        tracing::warn!(
            gpu = %info.uuid,
            cuda_device_id,
            "CUDA_DEVICE_ORDER is not PCI_BUS_ID; the CUDA device id may name another GPU. \
             Set CUDA_DEVICE_ORDER=PCI_BUS_ID (the deploy images do)"
        );
    }
    Ok(PinnedGpu {
        nvml: Arc::new(nvml),
        info,
        cuda_device_id,
    })
}

/// The CUDA ordinal of the device with NVML `index` and `uuid`, given `CUDA_VISIBLE_DEVICES`.
///
/// NVML ignores `CUDA_VISIBLE_DEVICES`, CUDA renumbers the devices it lists from 0. Entries
/// are indices or (prefixes of) UUIDs; like CUDA, the list ends at the first invalid entry.
/// Unset means all devices in PCI order (which `CUDA_DEVICE_ORDER=PCI_BUS_ID` guarantees).
pub fn cuda_ordinal(visible: Option<&str>, index: u32, uuid: &str) -> Result<u32, GpuError> {
    let Some(list) = visible else {
        return Ok(index);
    };
    let uuid_lower = uuid.to_ascii_lowercase();
    for (ordinal, entry) in list.split(',').map(str::trim).enumerate() {
        let matches = if let Ok(i) = entry.parse::<u32>() {
            i == index
        } else if has_gpu_prefix(entry) {
            uuid_lower.starts_with(&entry.to_ascii_lowercase())
        } else {
            break;
        };
        if matches {
            return Ok(ordinal as u32);
        }
    }
    Err(GpuError::NotVisible {
        index,
        uuid: uuid.to_owned(),
        visible: list.to_owned(),
    })
}

/// One GPU this worker is pinned to: the NVML handle, the id ONNX Runtime's CUDA provider
/// takes, and the environment child processes need to see only this device.
#[derive(Clone)]
pub struct PinnedGpu {
    nvml: Arc<Nvml>,
    info: DeviceInfo,
    cuda_device_id: u32,
}

impl std::fmt::Debug for PinnedGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedGpu")
            .field("info", &self.info)
            .field("cuda_device_id", &self.cuda_device_id)
            .finish_non_exhaustive()
    }
}

impl PinnedGpu {
    /// NVML index (PCI bus order).
    pub fn index(&self) -> u32 {
        self.info.index
    }

    pub fn uuid(&self) -> &str {
        &self.info.uuid
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn memory_total_bytes(&self) -> u64 {
        self.info.memory_total_bytes
    }

    /// The readings taken when the device was pinned.
    pub fn info_at_start(&self) -> &DeviceInfo {
        &self.info
    }

    /// For `CUDAExecutionProvider::with_device_id` (ort takes an i32).
    pub fn cuda_device_id(&self) -> i32 {
        self.cuda_device_id as i32
    }

    /// The value of `CUDA_VISIBLE_DEVICES` for child processes: the UUID, because indices
    /// shift when devices are added, removed or reordered, and a UUID never does.
    pub fn cuda_visible_devices(&self) -> &str {
        &self.info.uuid
    }

    /// Environment for child processes (model servers, ffmpeg with NVDEC) so that they use
    /// this GPU only, as their device 0.
    pub fn child_env(&self) -> [(&'static str, String); 2] {
        [
            ("CUDA_VISIBLE_DEVICES", self.info.uuid.clone()),
            ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_owned()),
        ]
    }

    /// The NVML handle, for readings this crate does not wrap.
    pub fn device(&self) -> Result<Device<'_>, GpuError> {
        // By UUID, not index: the UUID is what identifies the pinned card for its lifetime.
        self.nvml
            .device_by_uuid(self.info.uuid.as_str())
            .map_err(|e| GpuError::nvml("device_by_uuid", e))
    }

    /// Fresh readings of memory, utilization and temperature.
    pub fn sample(&self) -> Result<DeviceInfo, GpuError> {
        read(&self.device()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "GPU-6f1e2c3d-aaaa-bbbb-cccc-0123456789ab";

    #[test]
    fn selector_takes_an_index_or_a_uuid() {
        assert_eq!(Selector::parse("0").unwrap(), Selector::Index(0));
        assert_eq!(Selector::parse(" 3 ").unwrap(), Selector::Index(3));
        assert_eq!(
            Selector::parse(UUID).unwrap(),
            Selector::Uuid(UUID.to_owned())
        );
        for bad in ["", "gpu0", "-1", "GPU-", "cuda:0", "GPü-1"] {
            assert!(
                matches!(Selector::parse(bad), Err(GpuError::InvalidSelector(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn cuda_ordinal_follows_cuda_visible_devices() {
        assert_eq!(cuda_ordinal(None, 2, UUID).unwrap(), 2);
        assert_eq!(cuda_ordinal(Some("2"), 2, UUID).unwrap(), 0);
        assert_eq!(cuda_ordinal(Some("3, 2"), 2, UUID).unwrap(), 1);
        assert_eq!(cuda_ordinal(Some(UUID), 2, UUID).unwrap(), 0);
        // CUDA accepts a unique UUID prefix.
        assert_eq!(cuda_ordinal(Some("1,GPU-6f1e"), 2, UUID).unwrap(), 1);
    }

    #[test]
    fn cuda_ordinal_reports_a_hidden_device() {
        for visible in ["", "0,1", "GPU-ffff", "0,bogus,2"] {
            let err = cuda_ordinal(Some(visible), 2, UUID).unwrap_err();
            assert!(matches!(err, GpuError::NotVisible { .. }), "{visible}");
        }
    }

    #[test]
    fn a_missing_driver_is_no_driver_and_names_the_fallback() {
        for cause in [NvmlError::DriverNotLoaded, NvmlError::LibraryNotFound] {
            let e = GpuError::nvml("init", cause);
            assert!(matches!(e, GpuError::NoDriver { .. }), "{e:?}");
            assert!(e.to_string().contains("--allow-cpu-fallback"), "{e}");
        }
        assert!(matches!(
            GpuError::nvml("memory_info", NvmlError::GpuLost),
            GpuError::Nvml { .. }
        ));
        // Where no driver is installed (CI), the real call must say so the same way.
        if let Err(e) = list_devices() {
            assert!(
                matches!(e, GpuError::NoDriver { .. })
                    || std::path::Path::new("/dev/nvidiactl").exists(),
                "{e:?}"
            );
        }
    }
}
