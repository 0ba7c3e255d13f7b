//! The worker's `[media]` settings from `config/fleet.toml` → `media::MediaConfig`.

use std::time::Duration;

use common::config::FleetConfig;
use media::MediaConfig;

/// Reads `[media]`; every bad or unknown key is reported at once.
pub fn media_config(config: &FleetConfig) -> Result<MediaConfig, String> {
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
        let r: Result<(), String> = match k.as_str() {
            "max_bytes" => u64v().map(|x| m.max_bytes = x),
            "fetch_timeout_secs" => u64v().map(|x| m.fetch_timeout = Duration::from_secs(x)),
            "cache_max_bytes" => u64v().map(|x| m.cache_max_bytes = x),
            "decode_memory_bytes" => u64v().map(|x| m.decode_memory_bytes = x),
            "max_jobs" => u64v().map(|x| m.max_jobs = x as usize),
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
