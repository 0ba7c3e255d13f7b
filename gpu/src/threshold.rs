//! Memory thresholds ("40GB", "37.5 GiB", "90%") and the guard's pure state machine.
//!
//! Units are taken literally: GB = 10^9 bytes, GiB = 2^30 bytes. nvidia-smi and NVML
//! report MiB, so a card's "44.5 GB" in a spec sheet or seed is usually 44.5 GiB; a percent
//! threshold sidesteps the question and carries over to other cards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::GpuError;

/// Warning level used when the config names none: the seed's 35 GB of the RTX 8000's 44.5.
pub const DEFAULT_WARNING_PERCENT: f64 = 78.0;
/// Critical level used when the config names none: the seed's 40 GB of the RTX 8000's 44.5.
pub const DEFAULT_CRITICAL_PERCENT: f64 = 90.0;

/// One memory threshold: an absolute size or a share of the device's total memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryThreshold {
    Bytes(u64),
    /// Percent of the device's total memory, in (0, 100].
    Percent(f64),
}

impl MemoryThreshold {
    /// Bytes of used memory this threshold stands for on a device with `total` bytes.
    pub fn resolve(&self, total: u64) -> u64 {
        match *self {
            MemoryThreshold::Bytes(b) => b,
            MemoryThreshold::Percent(p) => (total as f64 * p / 100.0).round() as u64,
        }
    }
}

const UNITS: &[(&str, f64)] = &[
    ("b", 1.0),
    ("kb", 1e3),
    ("mb", 1e6),
    ("gb", 1e9),
    ("tb", 1e12),
    ("kib", 1024.0),
    ("mib", 1048576.0),
    ("gib", 1073741824.0),
    ("tib", 1099511627776.0),
];

impl FromStr for MemoryThreshold {
    type Err = GpuError;

    fn from_str(input: &str) -> Result<Self, GpuError> {
        let bad = |reason: &str| GpuError::InvalidThreshold {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| bad("expected a number followed by a unit"))?;
        if !value.is_finite() || value <= 0.0 {
            return Err(bad("must be greater than zero"));
        }
        let unit = unit.trim().to_ascii_lowercase();
        if unit == "%" {
            if value > 100.0 {
                return Err(bad("a percentage cannot exceed 100"));
            }
            return Ok(MemoryThreshold::Percent(value));
        }
        if unit.is_empty() {
            // A bare number is ambiguous (bytes? GB?), and a wrong guess pauses a GPU worker.
            return Err(bad("missing unit"));
        }
        let factor = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| bad("unknown unit; use B, MB, GB, MiB, GiB or %"))?;
        Ok(MemoryThreshold::Bytes((value * factor).round() as u64))
    }
}

impl fmt::Display for MemoryThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryThreshold::Bytes(b) => write!(f, "{}GB", *b as f64 / 1e9),
            MemoryThreshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

// Config files carry thresholds as strings, so serde goes through FromStr/Display.
impl Serialize for MemoryThreshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemoryThreshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The two levels the guard compares used memory with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardThresholds {
    pub warning: MemoryThreshold,
    pub critical: MemoryThreshold,
}

impl Default for GuardThresholds {
    fn default() -> Self {
        GuardThresholds {
            warning: MemoryThreshold::Percent(DEFAULT_WARNING_PERCENT),
            critical: MemoryThreshold::Percent(DEFAULT_CRITICAL_PERCENT),
        }
    }
}

impl GuardThresholds {
    /// Resolves both levels against a device with `total` bytes and checks they can work:
    /// warning below critical (else there is no hysteresis band) and critical within the card.
    pub fn resolve(&self, total: u64) -> Result<ResolvedThresholds, GpuError> {
        let warning_bytes = self.warning.resolve(total);
        let critical_bytes = self.critical.resolve(total);
        let gb = |b: u64| b as f64 / 1e9;
        if warning_bytes >= critical_bytes {
            return Err(GpuError::InvalidThresholds(format!(
                "warning ({}, {:.2} GB) must be below critical ({}, {:.2} GB)",
                self.warning,
                gb(warning_bytes),
                self.critical,
                gb(critical_bytes)
            )));
        }
        if critical_bytes > total {
            return Err(GpuError::InvalidThresholds(format!(
                "critical ({}, {:.2} GB) is above the device's {:.2} GB, so the guard would never pause",
                self.critical,
                gb(critical_bytes),
                gb(total)
            )));
        }
        Ok(ResolvedThresholds {
            warning_bytes,
            critical_bytes,
        })
    }
}

/// Thresholds in bytes for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResolvedThresholds {
    pub warning_bytes: u64,
    pub critical_bytes: u64,
}

/// What the worker may do, as decided by the memory guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardState {
    /// Below the warning level: take work.
    Normal,
    /// Between warning and critical: take work, but the residency policy should unload idle models.
    Warning,
    /// Went above critical and has not yet fallen below warning: take no new tasks
    /// (in-flight ones finish).
    Paused,
}

impl GuardState {
    /// Whether the worker may start new tasks.
    pub fn accepts_work(self) -> bool {
        self != GuardState::Paused
    }

    /// Stable lowercase name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Normal => "normal",
            GuardState::Warning => "warning",
            GuardState::Paused => "paused",
        }
    }
}

impl fmt::Display for GuardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guard's transition function, pure so it is tested without a GPU.
///
/// Above critical the worker pauses; once paused it resumes only below warning. The band
/// between the two keeps a worker hovering near critical from flapping on every poll.
pub fn next_state(prev: GuardState, used: u64, t: ResolvedThresholds) -> GuardState {
    if used > t.critical_bytes || (prev == GuardState::Paused && used >= t.warning_bytes) {
        GuardState::Paused
    } else if used > t.warning_bytes {
        GuardState::Warning
    } else {
        GuardState::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GuardState::*;

    const GIB: u64 = 1 << 30;
    // The RTX 8000 as NVML sees it, and the seed's thresholds.
    const RTX8000_TOTAL: u64 = 44_500 * GIB / 1000;

    fn seed() -> ResolvedThresholds {
        ResolvedThresholds {
            warning_bytes: 35 * GIB,
            critical_bytes: 40 * GIB,
        }
    }

    #[test]
    fn parses_sizes_and_percentages() {
        let p = |s: &str| s.parse::<MemoryThreshold>().unwrap();
        assert_eq!(p("40GB"), MemoryThreshold::Bytes(40_000_000_000));
        assert_eq!(p("40 GiB"), MemoryThreshold::Bytes(40 * GIB));
        assert_eq!(p(" 37.5gib "), MemoryThreshold::Bytes(37 * GIB + GIB / 2));
        assert_eq!(p("512MiB"), MemoryThreshold::Bytes(512 << 20));
        assert_eq!(p("90%"), MemoryThreshold::Percent(90.0));
        assert_eq!(p("78.5 %"), MemoryThreshold::Percent(78.5));
    }

    #[test]
    fn rejects_what_would_be_a_guess() {
        for bad in [
            "40", "", "GB", "-5GB", "0GB", "101%", "40 GBs", "4e1GB", "forty GB",
        ] {
            let err = bad.parse::<MemoryThreshold>().unwrap_err();
            assert!(
                matches!(err, GpuError::InvalidThreshold { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn serde_round_trips_through_strings() {
        let t: GuardThresholds =
            serde_json::from_str(r#"{"warning":"35GiB","critical":"90%"}"#).unwrap();
        assert_eq!(t.warning, MemoryThreshold::Bytes(35 * GIB));
        assert_eq!(t.critical, MemoryThreshold::Percent(90.0));
        let back = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<GuardThresholds>(&back).unwrap(), t);
    }

    #[test]
    fn percent_defaults_match_the_seed_on_an_rtx_8000() {
        let r = GuardThresholds::default().resolve(RTX8000_TOTAL).unwrap();
        let gib = |b: u64| b as f64 / GIB as f64;
        assert!((gib(r.warning_bytes) - 35.0).abs() < 0.5, "{r:?}");
        assert!((gib(r.critical_bytes) - 40.0).abs() < 0.5, "{r:?}");
    }

    #[test]
    fn resolve_rejects_thresholds_that_cannot_work() {
        let t = |w: &str, c: &str| GuardThresholds {
            warning: w.parse().unwrap(),
            critical: c.parse().unwrap(),
        };
        assert!(t("40GB", "35GB").resolve(RTX8000_TOTAL).is_err());
        assert!(t("90%", "90%").resolve(RTX8000_TOTAL).is_err());
        assert!(t("35GB", "60GB").resolve(RTX8000_TOTAL).is_err());
        assert!(t("35GiB", "40GiB").resolve(RTX8000_TOTAL).is_ok());
    }

    #[test]
    fn pauses_above_critical_and_resumes_only_below_warning() {
        let t = seed();
        // (used GiB, expected state), applied in order.
        let steps = [
            (10, Normal),
            (36, Warning),
            (41, Paused),
            (39, Paused), // back in the band: stay paused, no flapping
            (35, Paused), // at warning is not below it
            (34, Normal),
            (39, Warning), // the band without a prior pause is a warning only
            (40, Warning), // at critical is not above it
            (45, Paused),
            (0, Normal),
        ];
        let mut state = Normal;
        for (used, want) in steps {
            state = next_state(state, used * GIB, t);
            assert_eq!(state, want, "at {used} GiB");
        }
    }

    #[test]
    fn a_jump_from_normal_straight_past_critical_pauses() {
        assert_eq!(next_state(Normal, 44 * GIB, seed()), Paused);
        assert!(!Paused.accepts_work());
        assert!(Warning.accepts_work());
    }
}
