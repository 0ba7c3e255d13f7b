//! `fleet watch`: recent jobs, redrawn every interval until Ctrl-C (or printed once).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::api::Api;
use crate::cli::WatchArgs;
use crate::render;

/// Clear the screen and home the cursor (ANSI), so each refresh replaces the last.
const CLEAR: &str = "\x1b[H\x1b[2J";

pub async fn run(api: &Api, args: WatchArgs) -> anyhow::Result<()> {
    if args.once {
        let jobs = api.recent(args.limit).await?;
        print!("{}", render::jobs_table(&jobs, common::now_ms()));
        return Ok(());
    }
    let redraw = std::io::stdout().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        // A dispatcher restart is shown and outlived, not fatal: this is a monitor.
        let body = match api.recent(args.limit).await {
            Ok(jobs) => render::jobs_table(&jobs, common::now_ms()),
            Err(e) => format!("{e}\n"),
        };
        let header = format!(
            "fleet watch · {} · every {}s · Ctrl-C to stop\n",
            api.base().as_str().trim_end_matches('/'),
            args.interval
        );
        let mut out = std::io::stdout().lock();
        if redraw {
            write!(out, "{CLEAR}")?;
        }
        write!(out, "{header}{body}")?;
        out.flush()?;
        drop(out);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}
