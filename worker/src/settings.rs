//! The worker's `[media]` settings from `config/fleet.toml` → `media::MediaConfig`.

use std::time::Duration;

use common::config::FleetConfig;
use media::{HwDecode, MediaConfig};

/// Reads `[media]`; every bad or unknown key is reported at once. `cuda_device` is the
/// pinned GPU as CUDA numbers it (GPU workers): with `hw_decode = "nvdec"` their frame passes
/// decode on its NVDEC. The default (`"cpu"`, also `"auto"`) is the CPU decoder, the faster
/// of the two where it was measured (docs/gpu-fleet.md: a 30 s 1080x1920 clip in 1.3 s on
/// the H200 host's 16 cores, 2.9 s through NVDEC).
pub fn media_config(config: &FleetConfig, cuda_device: Option<u32>) -> Result<MediaConfig, String> {
    let mut m = MediaConfig::default();
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
                Some("auto" | "cpu") => {
                    m.hw_decode = HwDecode::Cpu;
                    Ok(())
                }
                Some("nvdec") => {
                    m.hw_decode = match cuda_device {
                        Some(device) => HwDecode::Cuda { device },
                        None => HwDecode::Cpu,
                    };
                    Ok(())
                }
                _ => Err(
                    "media.hw_decode must be \"cpu\" (the default; \"auto\" is the same) or \"nvdec\" (GPU workers decode on their GPU)"
                        .into(),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_media(media: &str) -> FleetConfig {
        let shipped = include_str!("../../config/fleet.toml");
        let text = shipped.replacen("[media]\n", &format!("[media]\n{media}\n"), 1);
        FleetConfig::parse(&text, "test", |_| None).expect("config parses")
    }

    #[test]
    fn gpu_workers_decode_on_the_cpu_unless_nvdec_is_asked_for() {
        let shipped = with_media("");
        assert_eq!(
            media_config(&shipped, Some(0)).unwrap().hw_decode,
            HwDecode::Cpu
        );
        for (value, gpu, want) in [
            ("cpu", Some(1), HwDecode::Cpu),
            ("auto", Some(1), HwDecode::Cpu),
            ("nvdec", Some(1), HwDecode::Cuda { device: 1 }),
            ("nvdec", None, HwDecode::Cpu),
        ] {
            let config = with_media(&format!("hw_decode = \"{value}\""));
            assert_eq!(
                media_config(&config, gpu).unwrap().hw_decode,
                want,
                "{value}"
            );
        }
        let bad = with_media("hw_decode = \"cuda\"");
        assert!(media_config(&bad, Some(0)).unwrap_err().contains("nvdec"));
    }
}
