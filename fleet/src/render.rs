//! Pure text for the terminal: job status, result tables, the progress line, job lists.
//! No I/O here, so every output is unit-tested.

use comfy_table::{ContentArrangement, Table, presets};
use common::config::STAGES;
use common::message::{Outcome, OutcomeStatus};

use crate::api::{JobResult, JobStatus, StageProgress};

/// Widest summary cell in a result table; the full value is in `--json`.
const SUMMARY_CHARS: usize = 60;

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// `1234` → `1.2s`, `95000` → `1m35s`, `800` → `800ms`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// Cuts `s` to `n` characters (on a char boundary), marking the cut with `…`.
pub fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let mut out: String = one_line.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Stages in the seed's order (stage1..stage4, cpu), unknown ones last.
fn stage_rank(stage: &str) -> usize {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(STAGES.len())
}

fn ordered_stages(job: &JobStatus) -> Vec<(&String, &StageProgress)> {
    let mut v: Vec<_> = job.stages.iter().collect();
    v.sort_by_key(|(s, _)| (stage_rank(s), s.as_str()));
    v
}

/// Stages with analyzers still to finish: `stage1 1/2 · cpu 0/3`.
pub fn unfinished_stages(job: &JobStatus) -> String {
    let parts: Vec<String> = ordered_stages(job)
        .into_iter()
        .filter(|(_, p)| p.done < p.total)
        .map(|(s, p)| format!("{s} {}/{}", p.done, p.total))
        .collect();
    parts.join(" · ")
}

/// The message next to the `--wait` progress bar.
pub fn progress_message(job: &JobStatus) -> String {
    let stages = unfinished_stages(job);
    let failed = match job.progress.failed {
        0 => String::new(),
        n => format!(" ({n} failed)"),
    };
    if job.is_final() || stages.is_empty() {
        format!("{}{failed}", job.status)
    } else {
        format!("{}: {stages}{failed}", job.status)
    }
}

/// How long the job ran (completed) or has been running (now).
fn elapsed(job: &JobStatus, now_ms: u64) -> String {
    let end = job.completed_at_ms.unwrap_or(now_ms);
    duration_ms(end.saturating_sub(job.created_at_ms))
}

/// `fleet status`: a few lines.
pub fn status_text(job: &JobStatus, now_ms: u64) -> String {
    let p = &job.progress;
    let mut out = format!(
        "job       {}\nstatus    {}\nvideo     {}\nprogress  {}/{} analyzers (ok {}, failed {}, skipped {})\n{}  {}\n",
        job.job_id,
        job.status,
        job.video,
        p.done,
        p.total,
        p.ok,
        p.failed,
        p.skipped,
        if job.completed_at_ms.is_some() {
            "took    "
        } else {
            "running "
        },
        elapsed(job, now_ms),
    );
    for (stage, sp) in ordered_stages(job) {
        let mark = if sp.done >= sp.total {
            "done"
        } else {
            "running"
        };
        out.push_str(&format!("  {stage:<8} {}/{} {mark}\n", sp.done, sp.total));
    }
    out
}

/// A short cell for an outcome: its error, or its result as compact JSON.
pub fn outcome_summary(o: &Outcome) -> String {
    match (&o.error, &o.result) {
        (Some(e), _) => truncate(e, SUMMARY_CHARS),
        (None, Some(r)) => truncate(&r.to_string(), SUMMARY_CHARS),
        (None, None) => String::new(),
    }
}

/// `fleet result` (and the end of `submit --wait`): header lines, one row per analyzer
/// (in stage order), the failed analyzers with their errors, and the synthetic label.
pub fn result_text(r: &JobResult, now_ms: u64) -> String {
    let job = &r.job;
    let p = &job.progress;
    let mut out = format!(
        "job {} {} in {}: {}/{} analyzers, ok {}, failed {}, skipped {}\nvideo {}\n",
        job.job_id,
        job.status,
        elapsed(job, now_ms),
        p.done,
        p.total,
        p.ok,
        p.failed,
        p.skipped,
        job.video
    );
    let mut rows: Vec<(&String, &Outcome)> = r.analyzers.iter().collect();
    rows.sort_by_key(|(name, o)| (stage_rank(&o.stage), o.started_at_ms, name.as_str()));
    if !rows.is_empty() {
        let mut t = table(&[
            "analyzer",
            "stage",
            "status",
            "backend",
            "duration",
            "attempts",
            "worker",
            "result / error",
        ]);
        for (name, o) in &rows {
            t.add_row(vec![
                name.to_string(),
                o.stage.clone(),
                o.status.as_str().to_string(),
                o.backend.clone(),
                duration_ms(o.duration_ms),
                o.attempts.to_string(),
                o.worker.clone(),
                outcome_summary(o),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    let failed: Vec<_> = rows
        .iter()
        .filter(|(_, o)| o.status == OutcomeStatus::Failed)
        .collect();
    if !failed.is_empty() {
        out.push_str(&format!("failed analyzers ({}):\n", failed.len()));
        for (name, o) in failed {
            out.push_str(&format!(
                "  {name}: {}\n",
                o.error.as_deref().unwrap_or("(no error recorded)")
            ));
        }
    }
    let synthetic = rows
        .iter()
        .filter(|(_, o)| o.backend == "synthetic")
        .count();
    if synthetic > 0 {
        out.push_str(&format!(
            "note: {synthetic} of {} analyzers ran the SYNTHETIC backend (tests/benchmarks only: placeholders, not real results)\n",
            rows.len()
        ));
    }
    out
}

/// `fleet watch`: one row per recent job.
pub fn jobs_table(jobs: &[JobStatus], now_ms: u64) -> String {
    if jobs.is_empty() {
        return "no jobs yet (submit one with `fleet submit <video>`)\n".into();
    }
    let mut t = table(&[
        "job",
        "status",
        "progress",
        "failed",
        "stages still running",
        "age",
        "took",
        "video",
    ]);
    for j in jobs {
        let took = j
            .completed_at_ms
            .map(|c| duration_ms(c.saturating_sub(j.created_at_ms)))
            .unwrap_or_default();
        t.add_row(vec![
            j.job_id.clone(),
            j.status.clone(),
            format!("{}/{}", j.progress.done, j.progress.total),
            j.progress.failed.to_string(),
            unfinished_stages(j),
            duration_ms(now_ms.saturating_sub(j.created_at_ms)),
            took,
            truncate(&j.video, 40),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::Progress;

    fn job(status: &str, done: usize, stages: &[(&str, usize, usize)]) -> JobStatus {
        JobStatus {
            job_id: "j1".into(),
            status: status.into(),
            video: "/v.mp4".into(),
            created_at_ms: 1_000,
            completed_at_ms: (status == "completed").then_some(3_500),
            progress: Progress {
                done,
                total: 5,
                ok: done,
                failed: 0,
                skipped: 0,
            },
            stages: stages
                .iter()
                .map(|(s, d, t)| {
                    (
                        s.to_string(),
                        StageProgress {
                            done: *d,
                            total: *t,
                        },
                    )
                })
                .collect(),
        }
    }

    fn outcome(stage: &str, status: OutcomeStatus, backend: &str, error: Option<&str>) -> Outcome {
        Outcome {
            status,
            result: error.is_none().then(|| serde_json::json!({"cuts": 3})),
            error: error.map(str::to_string),
            duration_ms: 1_250,
            worker: "cpu@h:1".into(),
            attempts: 1,
            backend: backend.into(),
            stage: stage.into(),
            started_at_ms: 0,
            finished_at_ms: 0,
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(0), "0ms");
        assert_eq!(duration_ms(999), "999ms");
        assert_eq!(duration_ms(1_250), "1.2s");
        assert_eq!(duration_ms(95_000), "1m35s");
        assert_eq!(duration_ms(3_600_000 + 120_000), "1h02m");
    }

    #[test]
    fn truncation_is_char_safe_and_single_line() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("äöüäöü", 4), "äöü…");
        assert_eq!(truncate("a\nb", 5), "a b");
    }

    #[test]
    fn progress_names_the_unfinished_stages_in_stage_order() {
        let j = job(
            "running",
            2,
            &[("cpu", 0, 1), ("stage1", 2, 2), ("stage2", 0, 2)],
        );
        assert_eq!(progress_message(&j), "running: stage2 0/2 · cpu 0/1");
        let mut j = job("running", 4, &[("stage1", 2, 2)]);
        j.progress.failed = 1;
        assert_eq!(progress_message(&j), "running (1 failed)");
        assert_eq!(
            progress_message(&job("completed", 5, &[("stage1", 2, 2)])),
            "completed"
        );
    }

    #[test]
    fn status_text_shows_progress_and_stages() {
        let s = status_text(
            &job("running", 2, &[("stage1", 2, 2), ("cpu", 0, 3)]),
            2_000,
        );
        assert!(s.contains("progress  2/5 analyzers"), "{s}");
        assert!(s.contains("running   1.0s"), "{s}");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[lines.len() - 2].trim(), "stage1   2/2 done");
        assert_eq!(lines[lines.len() - 1].trim(), "cpu      0/3 running");
    }

    #[test]
    fn result_table_lists_analyzers_failures_and_the_synthetic_label() {
        let mut analyzers = BTreeMap::new();
        analyzers.insert(
            "cut_analysis".to_string(),
            outcome("stage1", OutcomeStatus::Ok, "synthetic", None),
        );
        analyzers.insert(
            "speech_rate".to_string(),
            outcome(
                "cpu",
                OutcomeStatus::Failed,
                "synthetic",
                Some("model file missing: set models.x"),
            ),
        );
        let r = JobResult {
            job: job("completed", 2, &[]),
            analyzers,
            failed: BTreeMap::new(),
        };
        let text = result_text(&r, 0);
        assert!(
            text.starts_with("job j1 completed in 2.5s: 2/5 analyzers"),
            "{text}"
        );
        for cell in [
            "analyzer",
            "cut_analysis",
            "stage1",
            "synthetic",
            "1.2s",
            "cpu@h:1",
            r#"{"cuts":3}"#,
        ] {
            assert!(text.contains(cell), "{cell} missing in\n{text}");
        }
        // Stage order: stage1 row before the cpu row.
        assert!(text.find("cut_analysis").unwrap() < text.find("speech_rate").unwrap());
        assert!(
            text.contains(
                "failed analyzers (1):\n  speech_rate: model file missing: set models.x\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("2 of 2 analyzers ran the SYNTHETIC backend"),
            "{text}"
        );
    }

    #[test]
    fn long_summaries_are_cut() {
        let long = "x".repeat(500);
        let o = outcome("cpu", OutcomeStatus::Failed, "rust", Some(&long));
        assert_eq!(outcome_summary(&o).chars().count(), SUMMARY_CHARS);
    }

    #[test]
    fn jobs_table_has_one_row_per_job() {
        let text = jobs_table(
            &[
                job("running", 1, &[("stage2", 0, 1)]),
                job("completed", 5, &[]),
            ],
            11_000,
        );
        assert_eq!(text.matches("j1").count(), 2);
        assert!(
            text.contains("stage2 0/1") && text.contains("10.0s") && text.contains("2.5s"),
            "{text}"
        );
        assert!(jobs_table(&[], 0).contains("no jobs yet"));
    }
}
