//! The fleet config as the CLI needs it: the file when there is one, else the environment.

use std::path::{Path, PathBuf};

use common::config::{DEFAULT_CONFIG_PATH, EXIT_CONFIG, FleetConfig};

use crate::error::exit;

/// Where the config came from, so `up` can hand the same file to its children.
pub struct Loaded {
    pub config: FleetConfig,
    /// Absolute path of the file read; `None` when only the environment was used.
    pub path: Option<PathBuf>,
}

/// Reads `--config`/`FLEET_CONFIG` (must exist), else `config/fleet.toml` when it exists.
/// Commands that only need connection settings (`queues`, `dlq`) pass `require_file = false`
/// and then run from anywhere on the environment (FLEET_AMQP_URL, FLEET_PREFIX) and defaults.
pub fn load(explicit: Option<&Path>, require_file: bool) -> anyhow::Result<Loaded> {
    let env = |k: &str| std::env::var(k).ok();
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() || require_file => {
            Some(PathBuf::from(DEFAULT_CONFIG_PATH))
        }
        None => None,
    };
    let Some(path) = path else {
        let config = FleetConfig::parse("", "the environment", env).map_err(config_error)?;
        return Ok(Loaded { config, path: None });
    };
    if !path.exists() {
        return Err(exit(
            EXIT_CONFIG as u8,
            format!(
                "config file {} not found: run from the repository root or pass --config / set FLEET_CONFIG",
                path.display()
            ),
        ));
    }
    let config = FleetConfig::load(&path, env).map_err(config_error)?;
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(Loaded {
        config,
        path: Some(path),
    })
}

fn config_error(e: common::ConfigError) -> anyhow::Error {
    // Every problem at once (the config's own multi-line report), then exit 64.
    exit(
        EXIT_CONFIG as u8,
        format!("bad configuration: {}", e.to_string().trim_end()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_yields_the_default_connections() {
        let c = FleetConfig::parse("", "t", |_| None).unwrap();
        assert_eq!(c.connections.prefix, "fleet");
        assert_eq!(c.connections.amqp_url, common::config::DEFAULT_AMQP_URL);
    }

    #[test]
    fn a_missing_explicit_file_is_a_config_error() {
        let e = load(Some(Path::new("/nonexistent/fleet.toml")), false)
            .err()
            .unwrap();
        assert_eq!(crate::error::exit_code(&e), 64);
        assert!(e.to_string().contains("FLEET_CONFIG"), "{e}");
    }
}
