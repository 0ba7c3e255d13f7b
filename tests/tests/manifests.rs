//! `k8s/` and `deploy/docker-compose.yml` against the code: every manifest parses into its
//! Kubernetes type with no unknown field, and the names, ports, queues and environment
//! variables they use are the ones `common` defines. A rename in the code, or a typo in a
//! manifest, fails here instead of in a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::config::{DEFAULT_DISPATCHER_PORT, DEFAULT_WORKER_PORT, FleetConfig, env as fleet_env};
use common::topology::{DEFAULT_PREFIX, Topology};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, PodTemplateSpec, Probe, Secret, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const FLEET_ENV: [&str; 11] = [
    fleet_env::CONFIG,
    fleet_env::AMQP_URL,
    fleet_env::REDIS_URL,
    fleet_env::LISTEN,
    fleet_env::METRICS_LISTEN,
    fleet_env::API_TOKEN,
    fleet_env::CLIENT_TOKENS,
    fleet_env::ALLOW_OPEN_API,
    fleet_env::LOCAL_ROOTS,
    fleet_env::PREFIX,
    fleet_env::RABBITMQ_API,
];

/// Read by the `fleet` CLI only (`--url`, `fleet queues`); the CLI is a binary crate, so its
/// names (fleet/src/cli.rs, fleet/src/queues.rs) are spelled here.
const CLI_ENV: [&str; 2] = ["FLEET_URL", "FLEET_RABBITMQ_API"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn fleet_config() -> FleetConfig {
    FleetConfig::load(&root().join("config/fleet.toml"), |_| None).expect("config/fleet.toml")
}

/// Seconds a worker may need after SIGTERM: the configured grace and the longest analyzer.
fn drain_secs(config: &FleetConfig) -> f64 {
    let longest = config
        .analyzers
        .values()
        .map(|a| a.expected_secs)
        .fold(0.0, f64::max);
    longest.max(config.shutdown_grace.as_secs_f64())
}

// ---- KEDA and kustomize: no Rust types published, so local ones ------------------------
// KEDA's are strict (`deny_unknown_fields`): a field they declare but no test reads is there
// so that it is allowed, hence `allow(dead_code)`.

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Meta {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: ScaledObjectSpec,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScaledObjectSpec {
    scale_target_ref: Named,
    min_replica_count: Option<u32>,
    max_replica_count: Option<u32>,
    polling_interval: Option<u32>,
    cooldown_period: Option<u32>,
    advanced: Option<Advanced>,
    triggers: Vec<Trigger>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Advanced {
    horizontal_pod_autoscaler_config: Option<HpaConfig>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HpaConfig {
    behavior: Option<HorizontalPodAutoscalerBehavior>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    metadata: BTreeMap<String, String>,
    authentication_ref: Option<Named>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerAuthentication {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: TriggerAuthSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerAuthSpec {
    secret_target_ref: Vec<SecretTargetRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretTargetRef {
    parameter: String,
    name: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
}

#[derive(Debug, Deserialize)]
struct Generator {
    name: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    literals: Vec<String>,
}

// ---- loading ---------------------------------------------------------------------------

#[derive(Default)]
struct K8s {
    deployments: BTreeMap<String, Deployment>,
    services: BTreeMap<String, Service>,
    pdbs: BTreeMap<String, PodDisruptionBudget>,
    hpas: BTreeMap<String, HorizontalPodAutoscaler>,
    namespaces: Vec<Namespace>,
    scaled_objects: BTreeMap<String, ScaledObject>,
    trigger_auths: BTreeMap<String, TriggerAuthentication>,
    secret_example: Option<Secret>,
    /// Folder (relative to the repository) → its kustomization.
    kustomizations: BTreeMap<PathBuf, Kustomization>,
    manifests: BTreeSet<PathBuf>,
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses `doc` as `T`, then checks nothing was dropped: k8s-openapi ignores unknown fields,
/// so a misspelt or misplaced key would otherwise pass silently.
fn typed<T: DeserializeOwned + serde::Serialize>(at: &str, doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    assert_kept(at, doc, &serde_json::to_value(&t).expect("serialize"));
    t
}

fn assert_kept(at: &str, orig: &Value, back: &Value) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let next = format!("{at}.{k}");
                let bv = b.get(k).unwrap_or_else(|| {
                    panic!("{next}: unknown field (a typo, or not in this Kubernetes API version)")
                });
                assert_kept(&next, v, bv);
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            assert_eq!(o.len(), b.len(), "{at}");
            for (i, (x, y)) in o.iter().zip(b).enumerate() {
                assert_kept(&format!("{at}[{i}]"), x, y);
            }
        }
        // Quantities and int-or-strings may come back as strings ("1" for 1).
        (o, b) => {
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            assert_eq!(text(o), text(b), "{at}");
        }
    }
}

fn load_k8s() -> K8s {
    let root = root();
    let mut k = K8s::default();
    let mut dirs = vec![root.join("k8s")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("k8s/") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(&root).expect("in repo").to_path_buf();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                dirs.push(path);
            } else if name == "kustomization.yaml" {
                let doc = yaml_docs(&path).remove(0);
                let kz = serde_json::from_value(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
                k.kustomizations
                    .insert(rel.parent().expect("dir").to_path_buf(), kz);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                k.manifests.insert(rel.clone());
                for doc in yaml_docs(&path) {
                    k.add(&rel, &doc);
                }
            }
        }
    }
    k
}

impl K8s {
    fn add(&mut self, file: &Path, doc: &Value) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = format!("{} {kind}/{name}", file.display());
        match kind.as_str() {
            "Deployment" => {
                self.deployments.insert(name, typed(&at, doc));
            }
            "Service" => {
                self.services.insert(name, typed(&at, doc));
            }
            "PodDisruptionBudget" => {
                self.pdbs.insert(name, typed(&at, doc));
            }
            "HorizontalPodAutoscaler" => {
                self.hpas.insert(name, typed(&at, doc));
            }
            "Namespace" => self.namespaces.push(typed(&at, doc)),
            "Secret" => self.secret_example = Some(typed(&at, doc)),
            "ScaledObject" => {
                let so: ScaledObject =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(
                    (so.api_version.as_str(), so.kind.as_str()),
                    ("keda.sh/v1alpha1", "ScaledObject")
                );
                self.scaled_objects.insert(name, so);
            }
            "TriggerAuthentication" => {
                let ta: TriggerAuthentication =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(ta.api_version, "keda.sh/v1alpha1", "{at}");
                self.trigger_auths.insert(name, ta);
            }
            other => panic!("{at}: kind {other:?} is not checked by this test; add it here"),
        }
    }

    fn fleet_env_literals(&self) -> BTreeMap<String, String> {
        let base = &self.kustomizations[Path::new("k8s/base")];
        let generator = base
            .config_map_generator
            .iter()
            .find(|g| g.name == "fleet-env")
            .expect("fleet-env generator");
        generator
            .literals
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').expect("KEY=value literal");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }
}

fn template(d: &Deployment) -> &PodTemplateSpec {
    &d.spec.as_ref().expect("deployment spec").template
}

fn pod(d: &Deployment) -> &PodSpec {
    template(d).spec.as_ref().expect("pod spec")
}

/// A string field of a Compose service (after interpolation), or "".
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn container(d: &Deployment) -> &Container {
    let containers = &pod(d).containers;
    assert_eq!(containers.len(), 1, "{:?}: one container", d.metadata.name);
    &containers[0]
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn port_named(c: &Container, name: &str) -> i32 {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{}: no port named {name}", c.name))
        .container_port
}

fn assert_probe(c: &Container, probe: Option<&Probe>, path: &str, port: &str) {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("{}: no {path} probe", c.name));
    assert_eq!(get.path.as_deref(), Some(path), "{}", c.name);
    assert_eq!(get.port, IntOrString::String(port.into()), "{}", c.name);
}

// ---- Kubernetes ---------------------------------------------------------------------------

#[test]
fn kustomizations_reference_every_manifest_and_only_existing_files() {
    let k = load_k8s();
    let root = root();
    let mut referenced = BTreeSet::new();
    for (dir, kz) in &k.kustomizations {
        for r in &kz.resources {
            let path = root.join(dir).join(r);
            assert!(
                path.exists(),
                "{}: resource {r} does not exist",
                dir.display()
            );
            if path.is_file() {
                referenced.insert(dir.join(r));
            }
        }
    }
    for m in &k.manifests {
        if m.ends_with("secret.example.yaml") {
            assert!(
                !referenced.contains(m),
                "the example Secret must stay out of every kustomization"
            );
        } else {
            assert!(
                referenced.contains(m),
                "{} is in no kustomization",
                m.display()
            );
        }
    }
    // KEDA by default; the fallback replaces it (KEDA's own HPA and a second one would fight).
    assert!(
        k.kustomizations[Path::new("k8s")]
            .resources
            .contains(&"keda.yaml".to_owned())
    );
    assert!(
        !k.kustomizations[Path::new("k8s/hpa-fallback")]
            .resources
            .iter()
            .any(|r| r.contains("keda"))
    );
    assert_eq!(k.namespaces.len(), 1);
}

#[test]
fn config_map_comes_from_config_fleet_toml() {
    let k = load_k8s();
    let base = &k.kustomizations[Path::new("k8s/base")];
    assert!(
        base.resources.contains(&"../../config".to_owned()),
        "k8s/base must include ../../config"
    );
    let path = root().join("config/kustomization.yaml");
    assert!(
        path.exists(),
        "config/kustomization.yaml is missing: it generates the fleet-config ConfigMap from \
         config/fleet.toml for k8s/ (see k8s/README.md)"
    );
    let kz: Kustomization =
        serde_json::from_value(yaml_docs(&path).remove(0)).expect("config/kustomization.yaml");
    let generator = kz
        .config_map_generator
        .iter()
        .find(|g| g.name == "fleet-config")
        .expect("fleet-config");
    assert_eq!(generator.files, ["fleet.toml"]);

    let config_path = &k.fleet_env_literals()[fleet_env::CONFIG];
    for d in k.deployments.values() {
        let c = container(d);
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| &m.mount_path == config_path);
        let mount = mount.unwrap_or_else(|| panic!("{}: nothing mounted at {config_path}", c.name));
        assert_eq!(mount.sub_path.as_deref(), Some("fleet.toml"));
        let volume = pod(d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .expect("volume");
        assert_eq!(
            volume.config_map.as_ref().map(|c| c.name.as_str()),
            Some("fleet-config")
        );
    }
}

#[test]
fn env_names_and_values_match_the_code() {
    let k = load_k8s();
    let shared = k.fleet_env_literals();
    for name in shared.keys().filter(|n| n.starts_with("FLEET_")) {
        assert!(
            FLEET_ENV.contains(&name.as_str()),
            "fleet-env: {name} is not read by the code"
        );
    }
    assert_eq!(shared[fleet_env::PREFIX], DEFAULT_PREFIX);
    let endpoint = &shared["OTEL_EXPORTER_OTLP_ENDPOINT"];
    match shared["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str() {
        "grpc" => assert!(endpoint.ends_with(":4317"), "{endpoint}"),
        "http/protobuf" => assert!(endpoint.ends_with(":4318"), "{endpoint}"),
        other => panic!("OTEL_EXPORTER_OTLP_PROTOCOL={other}"),
    }

    let secret = k.secret_example.as_ref().expect("k8s/secret.example.yaml");
    let secret_name = secret.metadata.name.as_deref().expect("name");
    let secret_keys: BTreeSet<&String> = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    for d in k.deployments.values() {
        let c = container(d);
        for e in c.env.iter().flatten() {
            if e.name.starts_with("FLEET_") {
                assert!(
                    FLEET_ENV.contains(&e.name.as_str()),
                    "{}: {} is not read by the code",
                    c.name,
                    e.name
                );
            }
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                assert_eq!(r.name, secret_name, "{}: {}", c.name, e.name);
                assert!(
                    secret_keys.contains(&r.key),
                    "{}: key {} not in the example Secret",
                    c.name,
                    r.key
                );
            }
        }
        for required in [fleet_env::AMQP_URL, fleet_env::REDIS_URL] {
            assert!(
                c.env.iter().flatten().any(|e| e.name == required),
                "{}: {required} missing",
                c.name
            );
        }
        assert!(
            env_value(c, "OTEL_SERVICE_NAME").is_some(),
            "{}: OTEL_SERVICE_NAME",
            c.name
        );
        let from = c
            .env_from
            .iter()
            .flatten()
            .filter_map(|f| f.config_map_ref.as_ref());
        assert!(
            from.map(|r| r.name.as_str()).eq(["fleet-env"]),
            "{}: envFrom fleet-env",
            c.name
        );
    }
}

#[test]
fn dispatcher_ports_probes_and_service_match_the_code() {
    let k = load_k8s();
    let d = &k.deployments["dispatcher"];
    let c = container(d);
    assert_eq!(c.command.as_deref(), Some(&["dispatcher".to_owned()][..]));
    assert_eq!(port_named(c, "http"), i32::from(DEFAULT_DISPATCHER_PORT));
    assert_eq!(
        env_value(c, fleet_env::LISTEN),
        Some(format!("0.0.0.0:{DEFAULT_DISPATCHER_PORT}").as_str())
    );
    assert_probe(c, c.liveness_probe.as_ref(), "/healthz", "http");
    assert_probe(c, c.readiness_probe.as_ref(), "/readyz", "http");
    assert_scraped(d, DEFAULT_DISPATCHER_PORT);

    let svc = k.services["dispatcher"].spec.as_ref().expect("spec");
    let pod_labels = template(d)
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let pod_labels = pod_labels.expect("pod labels");
    for (key, value) in svc.selector.iter().flatten() {
        assert_eq!(pod_labels.get(key), Some(value), "Service selector {key}");
    }
    let port = &svc.ports.as_ref().expect("ports")[0];
    assert_eq!(port.port, i32::from(DEFAULT_DISPATCHER_PORT));
    assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
}

fn assert_scraped(d: &Deployment, port: u16) {
    let a = template(d)
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    let a = a.expect("Prometheus annotations");
    let want = [
        ("scrape", "true"),
        ("port", &port.to_string()),
        ("path", "/metrics"),
    ];
    for (key, value) in want {
        assert_eq!(a[&format!("prometheus.io/{key}")], value);
    }
}

#[test]
fn workers_are_pinned_probed_and_drained_as_the_code_expects() {
    let k = load_k8s();
    let config = fleet_config();
    for (name, class) in [("worker-gpu", "gpu"), ("worker-cpu", "cpu")] {
        let d = &k.deployments[name];
        let c = container(d);
        assert_eq!(
            c.command.as_deref(),
            Some(&["worker".to_owned()][..]),
            "{name}"
        );
        let args = c.args.as_deref().unwrap_or_default();
        assert!(
            args.windows(2).any(|w| w == ["--class", class]),
            "{name}: --class {class}"
        );
        assert_eq!(
            port_named(c, "metrics"),
            i32::from(DEFAULT_WORKER_PORT),
            "{name}"
        );
        let listen = format!("0.0.0.0:{DEFAULT_WORKER_PORT}");
        assert_eq!(
            env_value(c, fleet_env::METRICS_LISTEN),
            Some(listen.as_str()),
            "{name}"
        );
        assert_probe(c, c.liveness_probe.as_ref(), "/healthz", "metrics");
        assert_probe(c, c.readiness_probe.as_ref(), "/readyz", "metrics");
        assert_scraped(d, DEFAULT_WORKER_PORT);
        let grace = pod(d)
            .termination_grace_period_seconds
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace as f64 > drain_secs(&config),
            "{name}: grace {grace} s must exceed {} s",
            drain_secs(&config)
        );
        let pdb = k.pdbs[name].spec.as_ref().expect("pdb spec");
        let want = d.spec.as_ref().unwrap().selector.match_labels.as_ref();
        assert_eq!(
            pdb.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
            want,
            "{name}: PDB selector"
        );
    }

    let gpu = &k.deployments["worker-gpu"];
    let c = container(gpu);
    assert!(
        c.args.iter().flatten().any(|a| a == "--gpu"),
        "GPU worker pins a device"
    );
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    assert_eq!(limits.expect("limits")["nvidia.com/gpu"].0, "1");
    let selector = pod(gpu).node_selector.as_ref().expect("nodeSelector");
    assert_eq!(selector["nvidia.com/gpu.product"], "Quadro-RTX-8000");
}

#[test]
fn cpu_workers_scale_on_the_cpu_queue_including_unacked_tasks() {
    let k = load_k8s();
    let config = fleet_config();
    let prefix = &k.fleet_env_literals()[fleet_env::PREFIX];
    let so = &k.scaled_objects["worker-cpu"];
    assert!(k.deployments.contains_key(&so.spec.scale_target_ref.name));
    assert_eq!(so.spec.scale_target_ref.name, "worker-cpu");
    let [trigger] = &so.spec.triggers[..] else {
        panic!("one trigger")
    };
    assert_eq!(trigger.kind, "rabbitmq");
    assert_eq!(
        trigger.metadata["queueName"],
        Topology::new(prefix.as_str()).stage_queue("cpu")
    );
    // AMQP would count ready messages only; prefetched (unacked) tasks must count too.
    assert_eq!(trigger.metadata["protocol"], "http");
    let per_worker: f64 = trigger.metadata["value"].parse().expect("value");
    let concurrency = f64::from(config.stage("cpu").expect("cpu stage").concurrency);
    assert!(
        per_worker >= concurrency,
        "target {per_worker} below one worker's prefetch {concurrency}"
    );

    let auth = trigger
        .authentication_ref
        .as_ref()
        .expect("authenticationRef");
    let secret = k.secret_example.as_ref().expect("secret example");
    let secret_data = secret.string_data.as_ref().expect("stringData");
    for r in &k.trigger_auths[&auth.name].spec.secret_target_ref {
        assert_eq!(r.parameter, "host");
        assert_eq!(Some(r.name.as_str()), secret.metadata.name.as_deref());
        assert!(secret_data.contains_key(&r.key), "{}", r.key);
    }

    let hpa = k.hpas["worker-cpu"].spec.as_ref().expect("hpa spec");
    assert_eq!(hpa.scale_target_ref.name, "worker-cpu");
}

// ---- Compose -------------------------------------------------------------------------------

/// `${VAR:-default}` → default, as Compose does with VAR unset.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out + rest
}

fn compose() -> Value {
    let text = fs::read_to_string(root().join("deploy/docker-compose.yml")).expect("compose file");
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(&interpolate(&text)).expect("compose YAML");
    yaml.apply_merge().expect("<< merges");
    serde_json::to_value(yaml).expect("as JSON")
}

fn secs(duration: &str) -> f64 {
    let (n, unit) = duration.split_at(
        duration
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(duration.len()),
    );
    let n: f64 = n.parse().expect(duration);
    match unit {
        "s" | "" => n,
        "m" => n * 60.0,
        other => panic!("duration unit {other}"),
    }
}

#[test]
fn compose_services_ports_and_env_match_the_code() {
    let c = compose();
    let config = fleet_config();
    let services = c["services"].as_object().expect("services");
    let names = [
        "rabbitmq",
        "redis",
        "jaeger",
        "dispatcher",
        "worker-gpu",
        "worker-cpu",
    ];
    for name in names {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, s) in services {
        let env = s["environment"].as_object().cloned().unwrap_or_default();
        for key in env.keys().filter(|k| k.starts_with("FLEET_")) {
            let known = FLEET_ENV.contains(&key.as_str())
                || (name == "fleet" && CLI_ENV.contains(&key.as_str()));
            assert!(known, "{name}: {key} is not read by the code");
        }
        if env.contains_key(fleet_env::AMQP_URL) {
            let amqp = text(&env[fleet_env::AMQP_URL]);
            assert!(amqp.contains("@rabbitmq:5672/"), "{name}");
            let redis = text(&env[fleet_env::REDIS_URL]);
            assert!(redis.starts_with("redis://redis:6379"), "{name}");
            assert_eq!(env[fleet_env::PREFIX], DEFAULT_PREFIX, "{name}");
            assert_eq!(
                env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4317",
                "{name}"
            );
            assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc", "{name}");
        }
    }

    let dispatcher = &services["dispatcher"];
    let port = DEFAULT_DISPATCHER_PORT;
    assert_eq!(
        dispatcher["environment"][fleet_env::LISTEN],
        format!("0.0.0.0:{port}")
    );
    let published = dispatcher["ports"].as_array().expect("ports");
    assert!(
        published
            .iter()
            .any(|p| text(p).ends_with(&format!(":{port}:{port}")))
    );
    let health = dispatcher["healthcheck"]["test"].to_string();
    assert!(health.contains(&format!(":{port}/readyz")), "{health}");

    let cli = &services["fleet"]["environment"];
    assert_eq!(cli[CLI_ENV[0]], format!("http://dispatcher:{port}"));
    assert!(text(&cli[CLI_ENV[1]]).ends_with("@rabbitmq:15672"));

    let port = DEFAULT_WORKER_PORT;
    for (name, class) in [("worker-gpu", "gpu"), ("worker-cpu", "cpu")] {
        let w = &services[name];
        assert_eq!(
            w["environment"][fleet_env::METRICS_LISTEN],
            format!("0.0.0.0:{port}"),
            "{name}"
        );
        let health = w["healthcheck"]["test"].to_string();
        assert!(health.contains(&format!(":{port}/readyz")), "{name}");
        let cmd: Vec<&str> = w["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(text)
            .collect();
        assert_eq!(cmd[0], "worker", "{name}");
        assert!(cmd.windows(2).any(|w| w == ["--class", class]), "{name}");
        let grace = secs(w["stop_grace_period"].as_str().expect("stop_grace_period"));
        assert!(
            grace > drain_secs(&config),
            "{name}: stop_grace_period {grace} s"
        );
    }
    let devices = &services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(devices["driver"], "nvidia");
    assert!(devices["capabilities"].to_string().contains(r#""gpu""#));
    assert!(
        services["worker-cpu"]["deploy"]["replicas"].is_number(),
        "CPU worker replicas"
    );

    let redis = services["redis"]["command"].to_string();
    assert!(redis.contains(r#""--appendonly","yes""#), "{redis}");
    assert!(text(&services["rabbitmq"]["image"]).contains("management"));
    let jaeger = services["jaeger"]["ports"].to_string();
    for p in ["4317:4317", "4318:4318", "16686:16686"] {
        assert!(jaeger.contains(p), "jaeger {p}");
    }
}
