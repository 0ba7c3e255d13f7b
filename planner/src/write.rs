//! Writes a proposal as a complete fleet.toml: the original file with its comments and
//! layout, the changed values replaced, each with a comment saying what it was.

use toml_edit::{DocumentMut, value};

use crate::search::Assignment;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the config is not valid TOML: {0}")]
    Toml(#[from] toml_edit::TomlError),
    #[error("the config has no {0} to change")]
    Missing(String),
}

/// `original` with `proposal`'s stages and concurrencies where they differ from `today`;
/// `header` lines go on top as comments.
pub fn proposal_toml(
    original: &str,
    today: &Assignment,
    proposal: &Assignment,
    header: &[String],
) -> Result<String, WriteError> {
    let mut doc: DocumentMut = original.parse()?;
    for (stage, &c) in &proposal.concurrency {
        let old = today.concurrency.get(stage).copied();
        if old == Some(c) {
            continue;
        }
        let item = doc
            .get_mut("stages")
            .and_then(|s| s.get_mut(stage))
            .ok_or_else(|| WriteError::Missing(format!("[stages.{stage}]")))?;
        item["concurrency"] = value(i64::from(c));
        let was = old.map_or("absent".to_string(), |o| o.to_string());
        if let Some(v) = item["concurrency"].as_value_mut() {
            v.decor_mut()
                .set_suffix(format!("    # planner: was {was}"));
        }
    }
    for (analyzer, stage) in &proposal.stage_of {
        let old = today.stage_of.get(analyzer);
        if old == Some(stage) {
            continue;
        }
        let item = doc
            .get_mut("analyzers")
            .and_then(|a| a.get_mut(analyzer))
            .ok_or_else(|| WriteError::Missing(format!("[analyzers.{analyzer}]")))?;
        item["stage"] = value(stage.as_str());
        let was = old.map_or("absent".to_string(), |o| format!("{o:?}"));
        if let Some(v) = item["stage"].as_value_mut() {
            v.decor_mut()
                .set_suffix(format!("    # planner: was {was}"));
        }
    }
    let mut out = String::new();
    for line in header {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    if !header.is_empty() {
        out.push('\n');
    }
    out.push_str(&doc.to_string());
    Ok(out)
}
