//! `fleet up`: a dispatcher, a GPU worker and N CPU workers as child processes of this one.
//!
//! Invariants: every child's output is prefixed with its name; SIGTERM/Ctrl-C is forwarded
//! to every child as SIGTERM and `up` waits for them to drain (a second signal, or the
//! config's grace period plus a margin, escalates to SIGKILL); a child that exits on its
//! own stops the others and makes `up` exit non-zero. No child outlives a clean `up`.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use common::config::env;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::cli::UpArgs;
use crate::settings;

/// Time past the config's shutdown grace before stragglers are killed.
const KILL_MARGIN: Duration = Duration::from_secs(15);
/// How long `up` waits for the dispatcher's /readyz before saying it is not ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// One process to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    /// Prefix of its log lines.
    pub name: String,
    /// Binary name: found next to `fleet`, else on PATH.
    pub program: &'static str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One GPU `up` starts a worker for: its NVML index (for the name) and UUID (what the worker
/// pins: indices shift when devices come and go, a UUID never does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuTarget {
    pub index: u32,
    pub uuid: String,
}

/// Resolves `--gpus` (`all`, or indices / UUIDs separated by commas) against the devices NVML
/// lists. Unknown devices, duplicates and an empty list are errors that name the GPUs there are.
pub fn select_gpus(spec: &str, devices: &[gpu::DeviceInfo]) -> anyhow::Result<Vec<GpuTarget>> {
    let known = || {
        if devices.is_empty() {
            "NVML lists no GPU".to_string()
        } else {
            let list: Vec<String> = devices
                .iter()
                .map(|d| format!("{} ({})", d.index, d.uuid))
                .collect();
            format!("GPUs here: {}", list.join(", "))
        }
    };
    let chosen: Vec<&gpu::DeviceInfo> = if spec.trim().eq_ignore_ascii_case("all") {
        devices.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let selector =
                gpu::Selector::parse(part).map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
            let found = devices.iter().find(|d| match &selector {
                gpu::Selector::Index(i) => d.index == *i,
                gpu::Selector::Uuid(u) => d.uuid.eq_ignore_ascii_case(u),
            });
            let Some(d) = found else {
                anyhow::bail!("--gpus: no GPU {part}; {}", known());
            };
            if chosen.iter().any(|c: &&gpu::DeviceInfo| c.uuid == d.uuid) {
                anyhow::bail!("--gpus: GPU {part} is named twice (one worker per GPU)");
            }
            chosen.push(d);
        }
        chosen
    };
    if chosen.is_empty() {
        anyhow::bail!("--gpus {spec:?} selects no GPU; {}", known());
    }
    Ok(chosen
        .into_iter()
        .map(|d| GpuTarget {
            index: d.index,
            uuid: d.uuid.clone(),
        })
        .collect())
}

/// The processes `up` starts. Each worker gets its own health/metrics port counting up from
/// `metrics` (only one process can bind a port; a worker without one has no probes). With
/// `gpus`, one GPU worker per GPU, pinned by UUID; without, one GPU worker that may fall back
/// to the CPU provider.
pub fn plan(
    args: &UpArgs,
    metrics: SocketAddr,
    gpus: &[GpuTarget],
) -> anyhow::Result<Vec<ChildSpec>> {
    let mut specs = vec![ChildSpec {
        name: "dispatcher".into(),
        program: "dispatcher",
        args: vec![],
        env: vec![],
    }];
    let scale: Vec<String> = match args.synthetic_scale {
        Some(s) => vec!["--synthetic-scale".into(), s.to_string()],
        None => vec![],
    };
    let mut workers: Vec<(String, Vec<String>)> = Vec::new();
    if !gpus.is_empty() {
        for g in gpus {
            workers.push((
                format!("worker-gpu{}", g.index),
                vec![
                    "--class".into(),
                    "gpu".into(),
                    "--gpu".into(),
                    g.uuid.clone(),
                ],
            ));
        }
    } else if !args.no_gpu_worker {
        workers.push((
            "worker-gpu".into(),
            vec![
                "--class".into(),
                "gpu".into(),
                "--allow-cpu-fallback".into(),
            ],
        ));
    }
    for i in 1..=args.cpu_workers {
        workers.push((
            format!("worker-cpu-{i}"),
            vec!["--class".into(), "cpu".into()],
        ));
    }
    for (k, (name, mut worker_args)) in workers.into_iter().enumerate() {
        let port = u16::try_from(k)
            .ok()
            .and_then(|k| metrics.port().checked_add(k))
            .with_context(|| format!("no free port for {name}'s metrics above {metrics}: lower --cpu-workers or FLEET_METRICS_LISTEN"))?;
        worker_args.extend(scale.iter().cloned());
        specs.push(ChildSpec {
            name,
            program: "worker",
            args: worker_args,
            env: vec![(
                env::METRICS_LISTEN.into(),
                SocketAddr::new(metrics.ip(), port).to_string(),
            )],
        });
    }
    Ok(specs)
}

/// `dir/name` if it is a file (the binaries cargo built next to `fleet`), else the first
/// `name` on `path`.
pub fn find_binary(name: &str, exe_dir: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let beside = exe_dir.map(|d| d.join(name)).filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(path?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The URL clients use for a listen address (a wildcard address is reached on loopback).
pub fn api_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

struct Running {
    name: String,
    pid: Option<u32>,
    status: Option<ExitStatus>,
}

pub async fn run(config: Option<&Path>, args: UpArgs) -> anyhow::Result<()> {
    let loaded = settings::load(config, true)?;
    let c = &loaded.config.connections;
    // The config loader already validated both addresses.
    let listen: SocketAddr = c.listen.parse()?;
    let metrics: SocketAddr = c.metrics_listen.parse()?;
    let gpus = match &args.gpus {
        Some(spec) => {
            let devices = gpu::list_devices().map_err(|e| {
                anyhow::anyhow!(
                    "--gpus {spec}: cannot list GPUs ({}); without --gpus one GPU worker starts and falls back to the CPU",
                    crate::error::root_cause(&e)
                )
            })?;
            select_gpus(spec, &devices)?
        }
        None => Vec::new(),
    };
    let specs = plan(&args, metrics, &gpus)?;
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let path_var = std::env::var_os("PATH");
    let mut programs = Vec::new();
    for spec in &specs {
        let found = find_binary(spec.program, exe_dir.as_deref(), path_var.as_deref()).with_context(|| {
            format!(
                "cannot find the `{}` binary next to fleet or on PATH — build it with `cargo build -p dispatcher -p worker`",
                spec.program
            )
        })?;
        programs.push(found);
    }
    let url = api_url(listen);
    let config_path = loaded.path.as_deref().map(Path::display);
    println!(
        "fleet up: prefix {}, config {}, {} process(es){}",
        c.prefix,
        config_path.map_or_else(|| "-".to_string(), |p| p.to_string()),
        specs.len(),
        if args.synthetic_scale.is_some() {
            ", SYNTHETIC analyzers (tests/demos only)"
        } else {
            ""
        }
    );

    let (exits_tx, mut exits) = mpsc::unbounded_channel::<(usize, std::io::Result<ExitStatus>)>();
    let mut running: Vec<Running> = Vec::new();
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for (i, (spec, program)) in specs.iter().zip(&programs).enumerate() {
        let mut cmd = Command::new(program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &loaded.path {
            cmd.env(env::CONFIG, p);
        }
        let mut child = match cmd.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                signal_all(&running, rustix::process::Signal::TERM);
                drain(&mut running, &mut exits, None).await;
                anyhow::bail!("cannot start {} ({}): {e}", spec.name, program.display());
            }
        };
        let label = format!("{:>width$} |", spec.name);
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(out, label.clone(), false)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, label, true)));
        }
        running.push(Running {
            name: spec.name.clone(),
            pid: child.id(),
            status: None,
        });
        let tx = exits_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((i, child.wait().await));
        });
    }
    println!(
        "fleet up: dispatcher API at {url} (export FLEET_URL={url}); Ctrl-C or SIGTERM stops everything"
    );
    let ready = tokio::spawn(announce_ready(url));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let died = tokio::select! {
        _ = term.recv() => None,
        _ = int.recv() => None,
        Some((i, status)) = exits.recv() => {
            running[i].status = Some(status.unwrap_or_else(|_| failed_status()));
            Some(i)
        }
    };
    ready.abort();
    match died {
        None => println!("fleet up: stopping: SIGTERM to every process, waiting for them to drain"),
        Some(i) => println!(
            "fleet up: {} exited unexpectedly ({}); stopping the others",
            running[i].name,
            describe(running[i].status.as_ref())
        ),
    }
    signal_all(&running, rustix::process::Signal::TERM);
    let deadline = tokio::time::Instant::now() + loaded.config.shutdown_grace + KILL_MARGIN;
    let killed = tokio::select! {
        k = drain(&mut running, &mut exits, Some(deadline)) => k,
        _ = term.recv() => { force(&mut running, &mut exits).await }
        _ = int.recv() => { force(&mut running, &mut exits).await }
    };
    // The pipes close when the children exit; let the last lines through.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    if let Some(i) = died {
        anyhow::bail!(
            "{} exited unexpectedly ({}); the other processes were stopped — see its log lines above",
            running[i].name,
            describe(running[i].status.as_ref())
        );
    }
    let bad: Vec<String> = running
        .iter()
        .filter(|r| !r.status.is_some_and(|s| s.success()))
        .map(|r| format!("{} ({})", r.name, describe(r.status.as_ref())))
        .collect();
    if killed || !bad.is_empty() {
        anyhow::bail!("not every process stopped cleanly: {}", bad.join(", "));
    }
    println!("fleet up: all {} processes stopped cleanly", running.len());
    Ok(())
}

fn failed_status() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(1 << 8)
}

fn describe(status: Option<&ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "still running".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
    }
}

fn signal_all(running: &[Running], sig: rustix::process::Signal) {
    for r in running.iter().filter(|r| r.status.is_none()) {
        if let Some(pid) = r.pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            // ESRCH: it exited in between; its exit arrives on the channel.
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// Waits until every child has exited; past `deadline` the rest get SIGKILL. Returns
/// whether anything had to be killed.
async fn drain(
    running: &mut [Running],
    exits: &mut mpsc::UnboundedReceiver<(usize, std::io::Result<ExitStatus>)>,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let mut killed = false;
    while running.iter().any(|r| r.status.is_none()) {
        let next = match deadline {
            Some(d) if !killed => match tokio::time::timeout_at(d, exits.recv()).await {
                Ok(n) => n,
                Err(_) => {
                    let slow: Vec<&str> = running
                        .iter()
                        .filter(|r| r.status.is_none())
                        .map(|r| r.name.as_str())
                        .collect();
                    println!(
                        "fleet up: {} did not stop in time; killing",
                        slow.join(", ")
                    );
                    signal_all(running, rustix::process::Signal::KILL);
                    killed = true;
                    continue;
                }
            },
            _ => exits.recv().await,
        };
        match next {
            Some((i, status)) => {
                running[i].status = Some(status.unwrap_or_else(|_| failed_status()))
            }
            None => break,
        }
    }
    killed
}

/// A second Ctrl-C/SIGTERM: kill what is left now.
async fn force(
    running: &mut [Running],
    exits: &mut mpsc::UnboundedReceiver<(usize, std::io::Result<ExitStatus>)>,
) -> bool {
    println!("fleet up: second signal: killing what is still running");
    signal_all(running, rustix::process::Signal::KILL);
    drain(running, exits, None).await;
    true
}

/// Copies a child's output line by line, prefixed with its name.
async fn pump(stream: impl AsyncRead + Unpin, label: String, to_stderr: bool) {
    use std::io::Write;
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // A closed stdout (`fleet up | head`) must not kill the supervisor.
        let _ = if to_stderr {
            writeln!(std::io::stderr().lock(), "{label} {line}")
        } else {
            writeln!(std::io::stdout().lock(), "{label} {line}")
        };
    }
}

async fn announce_ready(url: String) {
    let Ok(api) = Api::new(&url) else { return };
    let start = tokio::time::Instant::now();
    while start.elapsed() < READY_WITHIN {
        if api.ready().await {
            println!("fleet up: ready — try `FLEET_URL={url} fleet submit <video> --wait`");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "fleet up: the dispatcher is not ready after {}s — check RabbitMQ and Redis (see the log lines above)",
        READY_WITHIN.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(scale: Option<f64>, cpu: usize, no_gpu: bool) -> UpArgs {
        UpArgs {
            synthetic_scale: scale,
            cpu_workers: cpu,
            no_gpu_worker: no_gpu,
            gpus: None,
        }
    }

    /// Two simulated devices whose NVML order is not the order of their UUIDs.
    fn devices() -> Vec<gpu::DeviceInfo> {
        let d = |index: u32, uuid: &str| gpu::DeviceInfo {
            index,
            uuid: uuid.into(),
            name: "NVIDIA H200".into(),
            memory_used_bytes: 0,
            memory_total_bytes: 150_000_000_000,
            utilization_percent: None,
            temperature_celsius: None,
        };
        vec![
            d(0, "GPU-bbbbbbbb-0000-0000-0000-000000000000"),
            d(1, "GPU-aaaaaaaa-0000-0000-0000-000000000000"),
        ]
    }

    #[test]
    fn gpus_all_starts_one_pinned_worker_per_device() {
        let targets = select_gpus("all", &devices()).unwrap();
        let specs = plan(
            &up(None, 1, false),
            "127.0.0.1:9100".parse().unwrap(),
            &targets,
        )
        .unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["dispatcher", "worker-gpu0", "worker-gpu1", "worker-cpu-1"]
        );
        assert_eq!(
            specs[1].args,
            [
                "--class",
                "gpu",
                "--gpu",
                "GPU-bbbbbbbb-0000-0000-0000-000000000000"
            ]
        );
        assert_eq!(
            specs[2].args,
            [
                "--class",
                "gpu",
                "--gpu",
                "GPU-aaaaaaaa-0000-0000-0000-000000000000"
            ]
        );
        let ports: Vec<&str> = specs[1..].iter().map(metrics_of).collect();
        assert_eq!(
            ports,
            ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"]
        );
    }

    #[test]
    fn gpus_by_index_or_uuid_in_the_order_given() {
        let devs = devices();
        let t = select_gpus("1, GPU-BBBBBBBB-0000-0000-0000-000000000000", &devs).unwrap();
        assert_eq!(t.iter().map(|g| g.index).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(t[0].uuid, devs[1].uuid);
        for (bad, says) in [
            ("2", "no GPU 2"),
            ("0,0", "named twice"),
            ("1,GPU-aaaaaaaa-0000-0000-0000-000000000000", "named twice"),
            ("first", "--gpus"),
            (",", "selects no GPU"),
        ] {
            let e = select_gpus(bad, &devs).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = select_gpus("all", &[]).unwrap_err().to_string();
        assert!(e.contains("NVML lists no GPU"), "{e}");
    }

    fn metrics_of(s: &ChildSpec) -> &str {
        &s.env
            .iter()
            .find(|(k, _)| k == env::METRICS_LISTEN)
            .unwrap()
            .1
    }

    #[test]
    fn each_worker_gets_its_own_metrics_port() {
        let specs = plan(
            &up(Some(0.01), 2, false),
            "127.0.0.1:9100".parse().unwrap(),
            &[],
        )
        .unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["dispatcher", "worker-gpu", "worker-cpu-1", "worker-cpu-2"]
        );
        assert!(specs[0].env.is_empty());
        assert_eq!(
            specs[1].args,
            [
                "--class",
                "gpu",
                "--allow-cpu-fallback",
                "--synthetic-scale",
                "0.01"
            ]
        );
        assert_eq!(
            specs[3].args,
            ["--class", "cpu", "--synthetic-scale", "0.01"]
        );
        let ports: Vec<&str> = specs[1..].iter().map(metrics_of).collect();
        assert_eq!(
            ports,
            ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"]
        );
    }

    #[test]
    fn no_gpu_worker_and_no_scale() {
        let specs = plan(&up(None, 1, true), "0.0.0.0:9200".parse().unwrap(), &[]).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].args, ["--class", "cpu"]);
        assert_eq!(metrics_of(&specs[1]), "0.0.0.0:9200");
    }

    #[test]
    fn ports_past_65535_are_an_error() {
        let e = plan(&up(None, 3, false), "127.0.0.1:65534".parse().unwrap(), &[]).unwrap_err();
        assert!(e.to_string().contains("--cpu-workers"), "{e}");
    }

    #[test]
    fn binaries_are_found_beside_fleet_first_then_on_path() {
        let root = std::env::temp_dir().join(format!("fleet-up-test-{}", std::process::id()));
        let (beside, on_path) = (root.join("bin"), root.join("path"));
        std::fs::create_dir_all(&beside).unwrap();
        std::fs::create_dir_all(&on_path).unwrap();
        std::fs::write(on_path.join("worker"), "").unwrap();
        std::fs::write(on_path.join("dispatcher"), "").unwrap();
        std::fs::write(beside.join("dispatcher"), "").unwrap();
        let path = std::env::join_paths([&on_path]).unwrap();
        assert_eq!(
            find_binary("dispatcher", Some(&beside), Some(&path)),
            Some(beside.join("dispatcher"))
        );
        assert_eq!(
            find_binary("worker", Some(&beside), Some(&path)),
            Some(on_path.join("worker"))
        );
        assert_eq!(find_binary("nope", Some(&beside), Some(&path)), None);
        assert_eq!(find_binary("worker", Some(&beside), None), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            api_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(api_url("[::]:8080".parse().unwrap()), "http://[::1]:8080");
        assert_eq!(
            api_url("10.0.0.5:18181".parse().unwrap()),
            "http://10.0.0.5:18181"
        );
    }
}
