//! The worker's `[media]` settings from `config/fleet.toml` → `media::MediaConfig`.

use std::time::Duration;

use common::config::FleetConfig;
use media::{HwDecode, MediaConfig};

/// Reads `[media]`; every bad or unknown key is reported at once. `cuda_device` is the
/// pinned GPU as CUDA numbers it (GPU workers): with `hw_decode = "auto"` (the default) frame
/// passes decode on its NVDEC; `"cpu"` keeps them on the CPU.
pub fn media_config(config: &FleetConfig, cuda_device: Option<u32>) -> Result<MediaConfig, String> {
    let mut m = MediaConfig {
        hw_decode: match cuda_device {
            Some(device) => HwDecode::Cuda { device },
            None => HwDecode::Cpu,
        },
        ..MediaConfig::default()
    };
    let Some(table) = config.media.as_object() else {
        return Ok(m);
    };
    let mut problems = Vec::new();
    for (k, v) in table {
        let u64v = || {
            v.as_u64()
                .ok_or_else(|| format!("media.{k} must be a non-negative integer"))
        };
        let strings = || {
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|h| h.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| format!("media.{k} must be a list of strings"))
        };
        let secs = |x: u64| Duration::from_secs(x);
        let r: Result<(), String> = match k.as_str() {
            "max_bytes" => u64v().map(|x| m.max_bytes = x),
            "fetch_timeout_secs" => u64v().map(|x| m.fetch_timeout = secs(x)),
            "connect_timeout_secs" => u64v().map(|x| m.connect_timeout = secs(x)),
            "min_download_rate" => u64v().map(|x| m.min_download_rate = x),
            "download_grace_secs" => u64v().map(|x| m.download_grace = secs(x)),
            "cache_max_bytes" => u64v().map(|x| m.cache_max_bytes = x),
            "decode_memory_bytes" => u64v().map(|x| m.decode_memory_bytes = x),
            "budget_wait_secs" => u64v().map(|x| m.budget_wait = secs(x)),
            "max_jobs" => u64v().map(|x| m.max_jobs = x as usize),
            "max_duration_secs" => u64v().map(|x| m.max_duration = secs(x)),
            "max_dimension" => u64v().and_then(|x| {
                u32::try_from(x)
                    .map(|x| m.max_dimension = x)
                    .map_err(|_| "media.max_dimension is too large".to_string())
            }),
            "ffmpeg_memory_bytes" => u64v().map(|x| m.ffmpeg_memory_bytes = x),
            "ffmpeg_cpu_secs" => u64v().map(|x| m.ffmpeg_cpu_secs = x),
            "local_roots" => {
                strings().map(|r| m.local_roots = r.into_iter().map(Into::into).collect())
            }
            "allowed_formats" => strings().and_then(|f| {
                if f.iter().any(|x| {
                    x.is_empty() || !x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    Err(
                        "media.allowed_formats holds ffmpeg demuxer names (letters, digits, '_')"
                            .into(),
                    )
                } else {
                    m.allowed_formats = f;
                    Ok(())
                }
            }),
            "allow_private" => v
                .as_bool()
                .map(|b| m.allow_private = b)
                .ok_or_else(|| "media.allow_private must be true or false".into()),
            "cache_dir" => v
                .as_str()
                .map(|s| m.cache_dir = s.into())
                .ok_or_else(|| "media.cache_dir must be a path".into()),
            "allow_hosts" => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|h| h.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .map(|hs| m.allow_hosts = hs)
                .ok_or_else(|| "media.allow_hosts must be a list of host names or IPs".into()),
            "hw_decode" => match v.as_str() {
                Some("auto") => Ok(()),
                Some("cpu") => {
                    m.hw_decode = HwDecode::Cpu;
                    Ok(())
                }
                _ => {
                    Err("media.hw_decode must be \"auto\" (NVDEC on GPU workers) or \"cpu\"".into())
                }
            },
            other => Err(format!("media.{other}: unknown setting")),
        };
        if let Err(e) = r {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(m)
    } else {
        Err(problems.join("; "))
    }
}
