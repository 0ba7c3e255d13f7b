//! Writes benchmark sections into docs/benchmarks.md and describes the machine they ran on.
//!
//! Each benchmark owns a section between `<!-- fleet-bench:NAME:begin -->` and
//! `<!-- fleet-bench:NAME:end -->`; a rerun replaces only that section, so the prose around
//! the generated tables stays as written.

use std::path::Path;

fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- fleet-bench:{section}:begin -->"),
        format!("<!-- fleet-bench:{section}:end -->"),
    )
}

/// Replaces (or appends) `section` of the markdown file at `path` with `body`.
pub fn write_section(path: &Path, section: &str, body: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let new = replace_section(&old, section, body);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new)
}

pub fn replace_section(doc: &str, section: &str, body: &str) -> String {
    let (begin, end) = markers(section);
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &doc[..b], &doc[e + end.len()..]),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The 1 minute load average as a number.
pub fn load1() -> f64 {
    loadavg()
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `YYYY-MM-DD HH:MM UTC` for now (civil-from-days, no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// CPU count and memory of this machine.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} CPU(s), {mem_gib:.0} GiB RAM")
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place() {
        let doc = "# B\n\nintro\n";
        let once = replace_section(doc, "seed", "table 1");
        assert!(once.contains("intro") && once.contains("table 1"));
        let twice = replace_section(&format!("{once}\nafter\n"), "seed", "table 2");
        assert!(
            twice.contains("table 2") && !twice.contains("table 1") && twice.contains("after"),
            "{twice}"
        );
        assert_eq!(twice.matches("fleet-bench:seed:begin").count(), 1);
    }

    #[test]
    fn dates_are_civil() {
        let s = utc_now();
        assert!(
            s.len() == 20 && s.ends_with(" UTC") && s.starts_with("20"),
            "{s}"
        );
    }
}
