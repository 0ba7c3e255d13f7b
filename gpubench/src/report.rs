//! The markdown report, rewritten after every section so that a run cut short still leaves
//! what it measured.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Run;
use crate::setup::Env;

pub struct Section {
    pub title: String,
    pub body: String,
    pub json: Value,
}

impl Section {
    pub fn skipped(title: &str, why: &str) -> Self {
        Self {
            title: title.into(),
            body: format!("Not measured: {why}.\n"),
            json: Value::Null,
        }
    }
}

pub struct Report {
    path: PathBuf,
    json_path: Option<PathBuf>,
    head: String,
    sections: Vec<Section>,
    started: std::time::Instant,
}

impl Report {
    pub fn new(run: &Run) -> Self {
        let args: Vec<String> = std::env::args().collect();
        Self {
            path: run.report.clone(),
            json_path: run.json.clone(),
            head: format!(
                "# GPU inference benchmark\n\nA report of `bench-gpu` (crate `gpubench`), not a \
                 test. Command:\n\n```\n{}\n```\n\n",
                args.join(" ")
            ),
            sections: Vec::new(),
            started: std::time::Instant::now(),
        }
    }

    pub fn environment(&mut self, env: &Env) {
        let body = format!(
            "| | |\n|---|---|\n| GPU | {} ({:.0} GiB, NVML) |\n| CUDA execution provider | {} |\n| CPU cores | {} |\n| ONNX Runtime | {} |\n",
            if env.gpu_name.is_empty() {
                "none seen by NVML"
            } else {
                &env.gpu_name
            },
            env.gpu_total as f64 / (1u64 << 30) as f64,
            if env.gpu {
                "available"
            } else {
                "not available"
            },
            env.cores,
            env.ort.display()
        );
        self.push(Section {
            title: "Machine".into(),
            body,
            json: json!({"gpu": env.gpu_name, "gpu_total_bytes": env.gpu_total,
                "cuda": env.gpu, "cores": env.cores}),
        });
    }

    pub fn section(&mut self, s: Section) {
        self.push(s);
    }

    fn push(&mut self, s: Section) {
        eprintln!(
            "bench-gpu: {} done at {:.0} s",
            s.title,
            self.started.elapsed().as_secs_f64()
        );
        self.sections.push(s);
        if let Err(e) = self.write() {
            eprintln!("bench-gpu: could not write the report: {e}");
        }
    }

    fn write(&self) -> anyhow::Result<()> {
        let mut md = self.head.clone();
        for s in &self.sections {
            md.push_str(&format!("## {}\n\n{}\n", s.title, s.body));
        }
        md.push_str(&format!(
            "\n_Whole run: {:.0} s._\n",
            self.started.elapsed().as_secs_f64()
        ));
        std::fs::write(&self.path, md)?;
        if let Some(p) = &self.json_path {
            let all: serde_json::Map<String, Value> = self
                .sections
                .iter()
                .map(|s| (s.title.clone(), s.json.clone()))
                .collect();
            std::fs::write(p, serde_json::to_vec_pretty(&all)?)?;
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        self.write()?;
        eprintln!("bench-gpu: report in {}", self.path.display());
        Ok(())
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub struct Stats {
    pub median: f64,
    pub p99: f64,
}

pub fn stats(v: &[f64]) -> Stats {
    if v.is_empty() {
        return Stats {
            median: 0.0,
            p99: 0.0,
        };
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}
