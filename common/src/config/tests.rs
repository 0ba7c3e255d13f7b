use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn shipped() -> FleetConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/fleet.toml");
    FleetConfig::load(Path::new(path), no_env).expect("config/fleet.toml must load")
}

#[test]
fn shipped_config_holds_the_seed() {
    let c = shipped();
    assert_eq!(c.analyzers.len(), 41, "22 active + 19 disabled");
    assert_eq!(c.enabled_analyzers().count(), 22);
    let limits: Vec<(String, u16)> = STAGES
        .iter()
        .map(|s| (s.to_string(), c.stages[*s].concurrency))
        .collect();
    assert_eq!(
        limits,
        [
            ("stage1", 2),
            ("stage2", 3),
            ("stage3", 4),
            ("stage4", 4),
            ("cpu", 8)
        ]
        .map(|(s, n)| (s.to_string(), n))
    );
    assert_eq!(
        c.analyzers["speech_rate"].stage, "cpu",
        "the seed recommends CPU"
    );
    assert_eq!(c.analyzers["qwen2_vl_temporal"].expected_secs, 110.0);
    assert_eq!(c.analyzers["temporal_flow"].needs, vec!["cut_analysis"]);
    // The seed's 35 and 40 GiB of the RTX 8000's 44.5, as shares so they fit any card.
    assert_eq!(
        (c.gpu.warning.as_str(), c.gpu.critical.as_str()),
        ("78%", "90%")
    );
    assert!(!c.analyzers["composition_analysis"].enabled);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [stages.stage1]
        class = "gpu"
        [stages.stage9]
        class = "gpu"
        concurrency = 1
        [stages.cpu]
        class = "cpu"
        concurrency = 2
        [analyzers.a]
        stage = "stage7"
        expected_secs = 1
        [analyzers.b]
        stage = "cpu"
        expected_secs = 1
        needs = ["ghost", "off"]
        [analyzers.off]
        stage = "cpu"
        expected_secs = 1
        enabled = false
        [analyzers.c]
        stage = "cpu"
        expected_secs = 1
        needs = ["d"]
        [analyzers.d]
        stage = "cpu"
        expected_secs = 1
        uses = ["c"]
    "#;
    let e = FleetConfig::parse(text, "t.toml", no_env).unwrap_err();
    let all = e.problems.join("\n");
    for needle in [
        "stages.stage1.concurrency is missing",
        "stages.stage9: unknown stage",
        "analyzers.a.stage = \"stage7\"",
        "unknown analyzer \"ghost\"",
        "\"off\" is disabled",
        "dependency cycle: c -> d -> c",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(e.problems.len() >= 6);
}

#[test]
fn environment_overrides_connections() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/fleet.toml");
    let env = |k: &str| match k {
        "FLEET_AMQP_URL" => Some("amqp://u:p@h:1/v".to_string()),
        "FLEET_LISTEN" => Some("0.0.0.0:9999".to_string()),
        "FLEET_API_TOKEN" => Some("s3cret".to_string()),
        _ => None,
    };
    let c = FleetConfig::load(Path::new(path), env).unwrap();
    assert_eq!(c.connections.amqp_url, "amqp://u:p@h:1/v");
    assert_eq!(c.connections.listen, "0.0.0.0:9999");
    assert_eq!(c.connections.api_token.as_deref(), Some("s3cret"));
    assert_eq!(c.connections.redis_url, DEFAULT_REDIS_URL);
    let bad = |k: &str| (k == "FLEET_LISTEN").then(|| "nonsense".to_string());
    let e = FleetConfig::load(Path::new(path), bad).unwrap_err();
    assert!(e.to_string().contains("FLEET_LISTEN"), "{e}");
}

#[test]
fn job_subsets_pull_in_hard_dependencies() {
    let c = shipped();
    let got = c
        .resolve_job_analyzers(Some(&["temporal_flow".to_string()]))
        .unwrap();
    assert_eq!(got, vec!["cut_analysis", "temporal_flow"]);
    let err = c
        .resolve_job_analyzers(Some(&["nope".to_string(), "vid2seq".to_string()]))
        .unwrap_err();
    assert!(
        err.contains("\"nope\" is not an analyzer") && err.contains("\"vid2seq\" is disabled"),
        "{err}"
    );
    assert_eq!(c.resolve_job_analyzers(None).unwrap().len(), 22);
}

#[test]
fn the_delivery_deadline_and_lease_are_read_and_checked() {
    let c = shipped();
    assert_eq!(c.consumer_timeout, Duration::from_millis(1_800_000));
    assert_eq!(c.lease, Duration::from_secs(10));
    let text = r#"
        [fleet]
        consumer_timeout_ms = 500
        lease_secs = 1
        [stages.cpu]
        class = "cpu"
        concurrency = 2
    "#;
    let e = FleetConfig::parse(text, "t.toml", no_env).unwrap_err();
    let all = e.problems.join("\n");
    assert!(all.contains("fleet.consumer_timeout_ms = 500"), "{all}");
    assert!(all.contains("fleet.lease_secs = 1"), "{all}");
}
