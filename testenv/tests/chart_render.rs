//! The Deckhouse module chart, rendered by the real `helm template`: every setting of
//! `openapi/config-values.yaml` lands where it should (flags, placement, replicas, resources), the
//! defaults in the templates are the ones the schema declares, and the module follows the Deckhouse
//! conventions `dmt lint` enforces (labels, security contexts, probes, VPA/PDB, RBAC placement,
//! bilingual docs and schemas), so that they hold even where dmt itself cannot be built.
//!
//! helm and promtool come from `hack/tools.sh chart` (built once from `tools/`). Everything here is
//! deterministic: fixed values files, no cluster, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::{Mapping, Value};
use testenv::tools::{repo_root, tool_dir};

const MODULE: &str = "registry-operator";
const NAMESPACE: &str = "d8-registry-operator";
const VALUES_DEFAULT: &str = "hack/testdata/values-default.yaml";
const VALUES_CUSTOM: &str = "hack/testdata/values-custom.yaml";
const VALUES_CLUSTER: &str = "hack/testdata/values-cluster.yaml";
const API_VERSIONS: [&str; 2] = [
    "autoscaling.k8s.io/v1/VerticalPodAutoscaler",
    "monitoring.coreos.com/v1/ServiceMonitor",
];

// ---------------------------------------------------------------------------------------------
// Rendering

/// helm and promtool (`hack/tools.sh chart`, built once from tools/lint and tools/promtool).
fn chart_tools() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tool_dir("chart").expect("hack/tools.sh chart (helm, promtool)");
        for tool in ["helm", "promtool"] {
            assert!(dir.join(tool).is_file(), "no {tool} in {}", dir.display());
        }
        dir
    })
}

fn helm() -> PathBuf {
    chart_tools().join("helm")
}

/// One rendered object and the template it came from (`templates/...`).
#[derive(Debug, Clone)]
struct Obj {
    source: String,
    value: Value,
}

impl Obj {
    fn kind(&self) -> &str {
        str_at(&self.value, "kind").unwrap_or_default()
    }
    fn name(&self) -> &str {
        str_at(&self.value, "metadata.name").unwrap_or_default()
    }
    fn namespace(&self) -> Option<&str> {
        str_at(&self.value, "metadata.namespace")
    }
    fn id(&self) -> String {
        format!("{}/{} ({})", self.kind(), self.name(), self.source)
    }
}

struct Render {
    values: Vec<String>,
    set: Vec<String>,
    api_versions: bool,
}

impl Render {
    fn defaults() -> Self {
        Render {
            values: vec![VALUES_DEFAULT.into()],
            set: vec![],
            api_versions: true,
        }
    }
    fn custom() -> Self {
        Render::defaults().values(VALUES_CUSTOM)
    }
    fn values(mut self, file: impl Into<String>) -> Self {
        self.values.push(file.into());
        self
    }
    fn set(mut self, kv: &str) -> Self {
        self.set.push(kv.into());
        self
    }
    fn without_apis(mut self) -> Self {
        self.api_versions = false;
        self
    }

    /// `helm template`'s stdout, or its stderr when it fails.
    fn output(&self) -> Result<String, String> {
        let mut cmd = Command::new(helm());
        cmd.current_dir(repo_root()).args(["template", MODULE, "."]);
        for v in &self.values {
            cmd.args(["-f", v]);
        }
        for s in &self.set {
            cmd.args(["--set", s]);
        }
        if self.api_versions {
            for a in API_VERSIONS {
                cmd.args(["--api-versions", a]);
            }
        }
        let out = cmd.output().expect("running helm");
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).expect("helm output is UTF-8"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn objects(&self) -> Vec<Obj> {
        let text = self
            .output()
            .unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
        parse_manifests(&text)
    }
}

fn parse_manifests(text: &str) -> Vec<Obj> {
    let mut objs = Vec::new();
    for doc in text.split("\n---\n") {
        let source = doc
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(|s| s.trim_start_matches(&format!("{MODULE}/")).to_string())
            .unwrap_or_default();
        let value: Value = serde_yaml::from_str(doc)
            .unwrap_or_else(|e| panic!("rendered document is not YAML ({e}):\n{doc}"));
        if value.is_null() {
            continue;
        }
        objs.push(Obj { source, value });
    }
    objs
}

fn find<'a>(objs: &'a [Obj], kind: &str, name: &str) -> &'a Obj {
    objs.iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered; got {:?}", ids(objs)))
}

fn ids(objs: &[Obj]) -> Vec<String> {
    objs.iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// YAML access

/// The value at a dotted path (`spec.template.spec.containers.0.args`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) if cur.is_sequence() => cur.as_sequence()?.get(i)?,
            _ => cur.as_mapping()?.get(part)?,
        };
    }
    Some(cur)
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test YAML")
}

fn container<'a>(deploy: &'a Obj, name: &str) -> &'a Value {
    at(&deploy.value, "spec.template.spec.containers")
        .and_then(Value::as_sequence)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "name") == Some(name)))
        .unwrap_or_else(|| panic!("no container {name} in {}", deploy.id()))
}

fn args(deploy: &Obj) -> Vec<String> {
    let c = container(deploy, "registry-operator");
    at(c, "args")
        .and_then(Value::as_sequence)
        .expect("operator args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The value of `--name=value` among the args (None if absent; Some("") for a bare `--name`).
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}");
    let mut found = None;
    for a in args {
        if *a == prefix {
            found = Some(String::new());
        } else if let Some(v) = a.strip_prefix(&format!("{prefix}=")) {
            assert!(found.is_none(), "--{name} given twice in {args:?}");
            found = Some(v.to_string());
        }
    }
    found
}

/// The value of an environment variable of the operator container.
fn env(deploy: &Obj, name: &str) -> Option<String> {
    at(container(deploy, MODULE), "env")?
        .as_sequence()?
        .iter()
        .find(|e| str_at(e, "name") == Some(name))
        .and_then(|e| str_at(e, "value"))
        .map(str::to_string)
}

fn operator(objs: &[Obj]) -> &Obj {
    find(objs, "Deployment", MODULE)
}

// ---------------------------------------------------------------------------------------------
// Settings land where they should

#[test]
fn defaults_render_the_documented_flags_placement_and_resources() {
    let objs = Render::defaults().objects();
    let d = operator(&objs);
    let a = args(d);
    assert_eq!(a.first().map(String::as_str), Some("run"), "{a:?}");
    assert_eq!(
        at(container(d, MODULE), "command"),
        Some(&yaml(r#"["/registry-operator"]"#))
    );
    for (name, value) in [
        ("log-level", "info"),
        ("log-format", "json"),
        ("metrics-addr", "127.0.0.1:8080"),
        ("health-addr", "0.0.0.0:8081"),
        ("max-concurrent-scans", "16"),
        ("scan-concurrency", "8"),
        ("scan-timeout", "300"),
        ("max-images", "1000"),
        ("max-tags", "20000"),
        ("max-tag-page-bytes", "4194304"),
        ("body-idle-timeout", "10"),
        // Always on: a rolling update briefly runs two Pods even with one replica.
        ("leader-elect", "true"),
        ("shards", "1"),
    ] {
        assert_eq!(flag(&a, name).as_deref(), Some(value), "--{name} in {a:?}");
    }
    assert_eq!(flag(&a, "max-scans-per-namespace"), None, "{a:?}");
    assert_eq!(flag(&a, "registry-requests-per-second"), None, "{a:?}");
    assert_eq!(env(d, "EGRESS_ALLOW").as_deref(), Some(""));
    assert_eq!(env(d, "EGRESS_DENY").as_deref(), Some(""));
    assert_eq!(env(d, "EGRESS_CLUSTER_NETWORKS").as_deref(), Some(""));
    assert_eq!(at(&d.value, "spec.replicas"), Some(&yaml("1")));

    let pod = at(&d.value, "spec.template.spec").unwrap();
    assert_eq!(
        at(pod, "nodeSelector"),
        None,
        "no system nodes, no nodeSelector"
    );
    assert_eq!(
        at(pod, "tolerations"),
        Some(&yaml(
            "
- {key: dedicated.deckhouse.io, operator: Equal, value: registry-operator}
- {key: dedicated.deckhouse.io, operator: Equal, value: system}
- {key: drbd.linbit.com/lost-quorum}
- {key: drbd.linbit.com/force-io-error}
- {key: drbd.linbit.com/ignore-fail-over}
"
        ))
    );
    assert_eq!(
        at(container(d, MODULE), "resources"),
        Some(&yaml(
            "{requests: {cpu: 50m, memory: 64Mi, ephemeral-storage: 82Mi}, limits: {memory: 512Mi}}"
        ))
    );
    find(&objs, "VerticalPodAutoscaler", MODULE);
    find(&objs, "ServiceMonitor", MODULE);
}

/// Deckhouse's value shapes for a module installed from a ModuleSource: the module's own image is
/// `<registryOperator.registry.base>/<module name>@<digest>` (lib-helm's helm_lib_module_image),
/// kube-rbac-proxy is Deckhouse's common image from the cluster's registry.
#[test]
fn images_come_from_the_module_source_and_the_cluster_registry() {
    let objs = Render::defaults().objects();
    let d = operator(&objs);
    assert_eq!(
        str_at(container(d, MODULE), "image"),
        Some(
            "registry.example.com/modules/registry-operator@sha256:2222222222222222222222222222222222222222222222222222222222222222"
        )
    );
    assert_eq!(
        str_at(container(d, "kube-rbac-proxy"), "image"),
        Some(
            "registry.deckhouse.ru/deckhouse/ce@sha256:1111111111111111111111111111111111111111111111111111111111111111"
        )
    );
    // A mirror's repository (a trailing slash is tolerated, as Deckhouse passes it through).
    let custom = Render::custom().objects();
    assert_eq!(
        str_at(container(operator(&custom), MODULE), "image"),
        Some(
            "mirror.example.org/deckhouse/modules/registry-operator@sha256:2222222222222222222222222222222222222222222222222222222222222222"
        )
    );
    // Without a ModuleSource registry (the module shipped inside Deckhouse's own registry).
    let embedded = Render::defaults()
        .set("registryOperator.registry.base=")
        .objects();
    assert_eq!(
        str_at(container(operator(&embedded), MODULE), "image"),
        Some(
            "registry.deckhouse.ru/deckhouse/ce@sha256:2222222222222222222222222222222222222222222222222222222222222222"
        )
    );
}

fn dockerconfig(secret: &Obj) -> serde_json::Value {
    use base64::Engine as _;
    let data = secret.value["data"]
        .get(".dockerconfigjson")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: no .dockerconfigjson", secret.id()));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_else(|e| panic!("{}: not base64: {e}", secret.id()));
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{}: not JSON: {e}", secret.id()))
}

/// The Pods pull the module's image with the ModuleSource's credentials and Deckhouse's common
/// image with the cluster registry's: `deckhouse-registry` carries both (nodes need not have them).
#[test]
fn pull_secrets_cover_both_registries() {
    for (render, objs) in all_renders() {
        let d = operator(&objs);
        let pulls: Vec<&str> = at(&d.value, "spec.template.spec.imagePullSecrets")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("[{render}] no imagePullSecrets"))
            .iter()
            .filter_map(|s| str_at(s, "name"))
            .collect();
        assert_eq!(
            pulls,
            ["registry-operator-module-registry", "deckhouse-registry"],
            "[{render}]"
        );
        let sa = find(&objs, "ServiceAccount", MODULE);
        assert_eq!(
            at(&sa.value, "imagePullSecrets"),
            Some(&yaml(
                "[{name: registry-operator-module-registry}, {name: deckhouse-registry}]"
            ))
        );
        for name in pulls {
            let s = find(&objs, "Secret", name);
            assert_eq!(
                str_at(&s.value, "type"),
                Some("kubernetes.io/dockerconfigjson")
            );
        }
    }
    let objs = Render::defaults().objects();
    let module = dockerconfig(find(&objs, "Secret", "registry-operator-module-registry"));
    let module_hosts: Vec<&String> = module["auths"].as_object().unwrap().keys().collect();
    assert_eq!(module_hosts, ["registry.example.com"]);
    let merged = dockerconfig(find(&objs, "Secret", "deckhouse-registry"));
    let hosts: BTreeSet<&String> = merged["auths"].as_object().unwrap().keys().collect();
    assert_eq!(
        hosts.into_iter().map(String::as_str).collect::<Vec<_>>(),
        ["registry.deckhouse.ru", "registry.example.com"],
        "{merged}"
    );
    // A public ModuleSource and a cluster registry without credentials: still valid, empty auths.
    let open = Render::defaults()
        .set("registryOperator.registry.dockercfg=")
        .set("global.modulesImages.registry.dockercfg=")
        .objects();
    for name in ["registry-operator-module-registry", "deckhouse-registry"] {
        assert_eq!(
            dockerconfig(find(&open, "Secret", name)),
            serde_json::json!({"auths": {}}),
            "{name}"
        );
    }
}

#[test]
fn every_setting_changed_lands_in_the_deployment() {
    let objs = Render::custom().objects();
    let d = operator(&objs);
    let a = args(d);
    for (name, value) in [
        ("log-level", "debug"),
        ("max-concurrent-scans", "4"),
        ("scan-concurrency", "3"),
        ("scan-timeout", "120"),
        ("max-images", "250"),
        ("max-tags", "5000"),
        ("max-tag-page-bytes", "8388608"),
        ("body-idle-timeout", "5"),
        ("max-scans-per-namespace", "2"),
        ("registry-requests-per-second", "12.5"),
        ("leader-elect", "true"),
        ("leader-election-lease-name", "registry-operator"),
        ("shards", "6"),
        ("webhook-addr", "0.0.0.0:8082"),
        (
            "webhook-secret-file",
            "/etc/registry-operator/webhook/token",
        ),
        ("min-scan-interval", "7200"),
        ("webhook-read-timeout", "20"),
        ("webhook-max-connections", "512"),
    ] {
        assert_eq!(flag(&a, name).as_deref(), Some(value), "--{name} in {a:?}");
    }
    assert_eq!(at(&d.value, "spec.replicas"), Some(&yaml("3")));
    assert_eq!(
        env(d, "EGRESS_ALLOW").as_deref(),
        Some("10.20.0.0/16,registry.internal")
    );
    assert_eq!(env(d, "EGRESS_DENY").as_deref(), Some("10.96.0.0/12"));

    let pod = at(&d.value, "spec.template.spec").unwrap();
    assert_eq!(
        at(pod, "nodeSelector"),
        Some(&yaml(
            r#"{node-role.kubernetes.io/registry-scanner: "", topology.kubernetes.io/zone: zone-b}"#
        ))
    );
    assert_eq!(
        at(pod, "tolerations"),
        Some(&yaml(
            "
- {key: dedicated, operator: Equal, value: registry-scanner, effect: NoSchedule}
- {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
- {key: drbd.linbit.com/lost-quorum}
- {key: drbd.linbit.com/force-io-error}
- {key: drbd.linbit.com/ignore-fail-over}
"
        ))
    );
    assert!(
        at(pod, "affinity.podAntiAffinity").is_some(),
        "replicas spread over nodes"
    );
    assert_eq!(
        at(container(d, MODULE), "resources"),
        Some(&yaml(
            r#"{requests: {cpu: 250m, memory: 256Mi, ephemeral-storage: 82Mi}, limits: {cpu: "2", memory: 1Gi}}"#
        ))
    );
    let secret = find(&objs, "Secret", "registry-operator-module-registry");
    assert_eq!(
        secret.value["data"]
            .get(".dockerconfigjson")
            .and_then(Value::as_str),
        Some(
            "eyJhdXRocyI6eyJtaXJyb3IuZXhhbXBsZS5vcmciOnsiYXV0aCI6ImJXbHljbTl5T20xcGNuSnZjaTF6WldOeVpYUT0ifX19"
        )
    );
}

/// The cluster configuration Deckhouse passes every module: its Pod and Service networks are
/// closed to scans unless `egress.allowClusterNetworks` opens them, and its HTTP proxy reaches
/// the operator through the operator's own variables (it never reads `HTTP(S)_PROXY`), with the
/// cluster's addresses going direct, where the egress policy judges them.
#[test]
fn cluster_networks_are_closed_and_the_cluster_proxy_is_passed() {
    let proxy_vars = [
        "REGISTRY_HTTP_PROXY",
        "REGISTRY_HTTPS_PROXY",
        "REGISTRY_NO_PROXY",
    ];
    let lib_helm_proxy_vars = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy"];

    // No cluster configuration (a cluster Deckhouse did not install): nothing to close, no proxy.
    let objs = Render::defaults().objects();
    let d = operator(&objs);
    assert_eq!(env(d, "EGRESS_CLUSTER_NETWORKS").as_deref(), Some(""));
    for var in proxy_vars.iter().chain(&lib_helm_proxy_vars) {
        assert_eq!(env(d, var), None, "{var}");
    }

    let objs = Render::defaults().values(VALUES_CLUSTER).objects();
    let d = operator(&objs);
    assert_eq!(
        env(d, "EGRESS_CLUSTER_NETWORKS").as_deref(),
        Some("10.111.0.0/16,10.222.0.0/16")
    );
    assert_eq!(
        env(d, "REGISTRY_HTTP_PROXY").as_deref(),
        Some("http://proxy.corp.example:3128")
    );
    assert_eq!(
        env(d, "REGISTRY_HTTPS_PROXY").as_deref(),
        Some("http://proxy-user:proxy-Secret@proxy.corp.example:3129")
    );
    assert_eq!(
        env(d, "REGISTRY_NO_PROXY").as_deref(),
        Some(
            "127.0.0.1,169.254.169.254,cluster.local,10.111.0.0/16,10.222.0.0/16,registry.corp.example,10.50.0.0/16"
        )
    );
    // The proxy URL may hold a password: an env value of the Pod, never an argument.
    assert!(
        args(d).iter().all(|a| !a.contains("proxy")),
        "{:?}",
        args(d)
    );
    for var in lib_helm_proxy_vars {
        assert_eq!(env(d, var), None, "{var}");
    }

    // The admin opens the cluster networks: the flag's value is empty, the proxy stays.
    let objs = Render::defaults()
        .values(VALUES_CLUSTER)
        .set("registryOperator.egress.allowClusterNetworks=true")
        .objects();
    let d = operator(&objs);
    assert_eq!(env(d, "EGRESS_CLUSTER_NETWORKS").as_deref(), Some(""));
    assert!(env(d, "REGISTRY_HTTPS_PROXY").is_some());

    // Networks without a proxy; only an HTTPS proxy.
    let objs = Render::defaults()
        .values(VALUES_CLUSTER)
        .set("global.clusterConfiguration.proxy=null")
        .objects();
    let d = operator(&objs);
    assert_eq!(
        env(d, "EGRESS_CLUSTER_NETWORKS").as_deref(),
        Some("10.111.0.0/16,10.222.0.0/16")
    );
    for var in proxy_vars {
        assert_eq!(env(d, var), None, "{var}");
    }
    let objs = Render::defaults()
        .values(VALUES_CLUSTER)
        .set("global.clusterConfiguration.proxy.httpProxy=null")
        .objects();
    let d = operator(&objs);
    assert_eq!(env(d, "REGISTRY_HTTP_PROXY"), None);
    assert!(env(d, "REGISTRY_HTTPS_PROXY").is_some());
    assert!(env(d, "REGISTRY_NO_PROXY").is_some());
}

/// Webhooks on: a Service for the receiver's named port, the shared secret mounted from the
/// named Secret, and `patch` on Registries for the hand-over annotation (off: none of it).
#[test]
fn webhooks_render_their_service_secret_and_hand_over_permission() {
    let on = Render::custom().objects();
    let d = operator(&on);
    let svc = find(&on, "Service", "registry-operator-webhook");
    assert_eq!(
        str_at(&svc.value, "spec.ports.0.targetPort"),
        Some("webhook")
    );
    assert_eq!(str_at(&svc.value, "spec.selector.app"), Some(MODULE));
    let ports = at(container(d, MODULE), "ports").unwrap();
    assert!(
        ports
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| str_at(p, "name") == Some("webhook")
                && at(p, "containerPort") == Some(&yaml("8082"))),
        "{ports:?}"
    );
    let volumes = at(&d.value, "spec.template.spec.volumes").unwrap();
    let secret = volumes
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| str_at(v, "name") == Some("webhook-secret"))
        .expect("the webhook secret volume");
    assert_eq!(str_at(secret, "secret.secretName"), Some("hooks"));
    assert_eq!(str_at(secret, "secret.items.0.key"), Some("token"));
    let mounts = at(container(d, MODULE), "volumeMounts").unwrap();
    assert!(
        mounts.as_sequence().unwrap().iter().any(|m| {
            str_at(m, "name") == Some("webhook-secret")
                && str_at(m, "mountPath") == Some("/etc/registry-operator/webhook")
        }),
        "{mounts:?}"
    );
    let registry_verbs = |objs: &[Obj]| -> Vec<String> {
        let role = find(
            objs,
            "ClusterRole",
            "d8:registry-operator:registry-operator",
        );
        at(&role.value, "rules")
            .and_then(Value::as_sequence)
            .unwrap()
            .iter()
            .filter(|r| at(r, "resources") == Some(&yaml("[registries]")))
            .flat_map(|r| at(r, "verbs").and_then(Value::as_sequence).unwrap().clone())
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(registry_verbs(&on), ["get", "list", "watch", "patch"]);

    let off = Render::defaults().objects();
    assert!(
        !off.iter()
            .any(|o| o.kind() == "Service" && o.name() == "registry-operator-webhook")
    );
    assert_eq!(registry_verbs(&off), ["get", "list", "watch"]);
    let a = args(operator(&off));
    assert_eq!(flag(&a, "webhook-addr"), None);
    assert_eq!(flag(&a, "min-scan-interval"), None);
}

#[test]
fn each_log_level_reaches_the_flag() {
    for level in ["debug", "info", "warn", "error"] {
        let objs = Render::defaults()
            .set(&format!("registryOperator.logLevel={level}"))
            .objects();
        assert_eq!(
            flag(&args(operator(&objs)), "log-level").as_deref(),
            Some(level)
        );
    }
}

#[test]
fn replicas_follow_cluster_high_availability_unless_set() {
    let ha = Render::defaults()
        .set("global.highAvailability=true")
        .objects();
    let d = operator(&ha);
    assert_eq!(at(&d.value, "spec.replicas"), Some(&yaml("2")));
    assert_eq!(flag(&args(d), "leader-elect").as_deref(), Some("true"));

    let one = Render::defaults()
        .set("global.highAvailability=true")
        .set("registryOperator.replicas=1")
        .objects();
    let d = operator(&one);
    assert_eq!(at(&d.value, "spec.replicas"), Some(&yaml("1")));
    assert_eq!(flag(&args(d), "leader-elect").as_deref(), Some("true"));
}

#[test]
fn system_nodes_are_preferred_when_the_cluster_has_them() {
    let objs = Render::defaults()
        .set("global.discovery.d8SpecificNodeCountByRole.system=2")
        .objects();
    assert_eq!(
        at(&operator(&objs).value, "spec.template.spec.nodeSelector"),
        Some(&yaml(r#"{node-role.deckhouse.io/system: ""}"#))
    );
}

#[test]
fn optional_apis_are_guarded() {
    let bare = Render::defaults()
        .without_apis()
        .set("global.enabledModules={}")
        .objects();
    for kind in ["VerticalPodAutoscaler", "ServiceMonitor"] {
        assert!(
            !bare.iter().any(|o| o.kind() == kind),
            "{kind} rendered without its API: {:?}",
            ids(&bare)
        );
    }
    assert!(
        !bare
            .iter()
            .any(|o| o.kind() == "RoleBinding" && o.name().starts_with("access-to-")),
        "Prometheus' access is bound only when the prometheus module is on"
    );
    // The ServiceMonitor also needs the prometheus module, which owns the d8-monitoring namespace.
    let no_prometheus = Render::defaults()
        .set("global.enabledModules={vertical-pod-autoscaler,operator-prometheus-crd}")
        .objects();
    assert!(
        !no_prometheus.iter().any(|o| o.kind() == "ServiceMonitor"),
        "ServiceMonitor without the prometheus module: {:?}",
        ids(&no_prometheus)
    );
    // Rules and dashboards need the prometheus-operator and Deckhouse's dashboard CRDs.
    for kind in ["PrometheusRule", "GrafanaDashboardDefinition"] {
        assert!(
            !bare.iter().any(|o| o.kind() == kind),
            "{kind} rendered without its CRD module"
        );
    }
    // The VPA module alone (before its API shows up in discovery) is enough for the VPA.
    let vpa_module = Render::defaults().without_apis().objects();
    find(&vpa_module, "VerticalPodAutoscaler", MODULE);
}

// ---------------------------------------------------------------------------------------------
// Monitoring: monitoring/prometheus-rules and monitoring/grafana-dashboards through lib-helm

const ALERTS: [&str; 7] = [
    "D8RegistryOperatorTargetAbsent",
    "D8RegistryOperatorTargetDown",
    "RegistryNewerVersion",
    "RegistryOperatorPanics",
    "RegistryOperatorRateLimited",
    "RegistryScanFailing",
    "RegistryScanStale",
];

fn alerts(rule: &Obj) -> Vec<&Value> {
    at(&rule.value, "spec.groups")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{}: no spec.groups", rule.id()))
        .iter()
        .flat_map(|g| at(g, "rules").and_then(Value::as_sequence).unwrap().iter())
        .collect()
}

#[test]
fn alerts_render_with_summaries_and_pass_promtool() {
    let objs = Render::defaults().objects();
    let rule = find(
        &objs,
        "PrometheusRule",
        "registry-operator-registry-operator",
    );
    assert_eq!(
        rule.namespace(),
        Some(NAMESPACE),
        "rules-watcher-enabled namespace"
    );
    assert_eq!(
        str_at(&rule.value, "metadata.labels.prometheus"),
        Some("main")
    );
    let mut names = BTreeSet::new();
    for alert in alerts(rule) {
        let name = str_at(alert, "alert").expect("only alerting rules");
        names.insert(name);
        for a in ["summary", "description"] {
            let text = str_at(alert, &format!("annotations.{a}")).unwrap_or_default();
            assert!(text.trim().len() > 20, "{name}: annotation {a} is {text:?}");
            assert!(!has_cyrillic(text), "{name}: {a} must be English");
        }
        assert!(
            str_at(alert, "labels.severity_level").is_some_and(|l| l.parse::<u8>().is_ok()),
            "{name}: severity_level"
        );
        assert!(str_at(alert, "for").is_some(), "{name}: needs a `for`");
    }
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ALERTS);

    // Prometheus' own checker: PromQL parses, templates in annotations compile, no duplicates.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_yaml::to_string(&rule.value["spec"]).unwrap()).unwrap();
    let out = Command::new(chart_tools().join("promtool"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{text}"
    );
}

/// `RegistryNewerVersion` through `promtool test rules`: it fires when an object's
/// `latest_info` series moves to another tag (and only for the new one), stays quiet for a new
/// object and for an operator restart that brings back the same series, and resolves.
#[test]
fn newer_version_alert_fires_when_latest_moves() {
    let objs = Render::defaults().objects();
    let rule = find(
        &objs,
        "PrometheusRule",
        "registry-operator-registry-operator",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rule.value["spec"]).unwrap(),
    )
    .unwrap();
    let series = |ns: &str, name: &str, tag: &str, digest: &str| {
        format!(
            r#"registry_operator_latest_info{{namespace="{ns}",name="{name}",tag="{tag}",digest="{digest}"}}"#
        )
    };
    // One sample a minute: `app` moves 1.25.3 -> 1.25.4 at minute 30; `new` appears then;
    // `steady` is away for two minutes (a restart) and comes back unchanged.
    let tests = serde_json::json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": series("ns", "app", "1.25.3", "sha256:a"), "values": "1x29 _x30"},
                {"series": series("ns", "app", "1.25.4", "sha256:b"), "values": "_x29 1x30"},
                {"series": series("ns", "new", "1.0.0", "sha256:c"), "values": "_x29 1x30"},
                {"series": series("ns", "steady", "2.0.0", "sha256:d"), "values": "1x29 _x2 1x27"},
            ],
            "alert_rule_test": [
                {"eval_time": "29m", "alertname": "RegistryNewerVersion", "exp_alerts": []},
                {"eval_time": "35m", "alertname": "RegistryNewerVersion", "exp_alerts": [{
                    "exp_labels": {
                        "severity_level": "9", "severity": "info",
                        "namespace": "ns", "name": "app", "tag": "1.25.4", "digest": "sha256:b",
                    },
                    "exp_annotations": {
                        "plk_protocol_version": "1",
                        "plk_markup_format": "markdown",
                        "summary": "Registry ns/app has a newer version, 1.25.4.",
                        "description": concat!(
                            "The version policy (`spec.policy`) of the Registry `app` in the namespace\n",
                            "`ns` now selects the tag `1.25.4` (sha256:b).\n\n",
                            "The version before it is in `status.previousLatest`\n",
                            "(`kubectl -n ns get registry app -o jsonpath='{.status.previousLatest.tag}'`),\n",
                            "and the `NewerVersion` Event says when it moved.\n",
                        ),
                    },
                }]},
                {"eval_time": "50m", "alertname": "RegistryNewerVersion", "exp_alerts": []},
            ],
        }],
    });
    std::fs::write(
        dir.path().join("tests.yaml"),
        serde_yaml::to_string(&tests).unwrap(),
    )
    .unwrap();
    let out = Command::new(chart_tools().join("promtool"))
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yaml"])
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool test rules:\n{text}");
}

/// promtool itself must fail on a broken rule, or the check above proves nothing.
#[test]
fn promtool_rejects_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum by (job (up)\n",
    )
    .unwrap();
    let out = Command::new(chart_tools().join("promtool"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    assert!(
        !out.status.success(),
        "promtool accepted a broken expression"
    );
}

/// Names the operator exports (images/registry-operator/src/controller/metrics.rs), with the
/// suffixes the text format adds: `_total` for counters, `_bucket`/`_sum`/`_count` for histograms.
fn exported_metrics() -> BTreeSet<String> {
    let src = std::fs::read_to_string(
        repo_root().join("images/registry-operator/src/controller/metrics.rs"),
    )
    .unwrap();
    let mut out = BTreeSet::new();
    for part in src.split(".register(").skip(1) {
        let name = part
            .split('"')
            .nth(1)
            .expect("register(\"name\", ...)")
            .to_string();
        for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
            out.insert(format!("registry_operator_{name}{suffix}"));
        }
    }
    out
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("registry_operator_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alerts_and_dashboard_read_metrics_the_operator_exports() {
    let exported = exported_metrics();
    assert!(exported.contains("registry_operator_last_success_timestamp_seconds"));
    let root = repo_root();
    let rules =
        std::fs::read_to_string(root.join("monitoring/prometheus-rules/registry-operator.yaml"))
            .unwrap();
    let dashboard = std::fs::read_to_string(
        root.join("monitoring/grafana-dashboards/main/registry-operator.json"),
    )
    .unwrap();
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{file} reads no operator metric");
        for m in used {
            assert!(
                exported.contains(&m),
                "{file} reads {m}, which the operator does not export"
            );
        }
    }
}

#[test]
fn dashboard_is_a_grafana_dashboard_definition() {
    let objs = Render::defaults().objects();
    let d = find(
        &objs,
        "GrafanaDashboardDefinition",
        "d8-registry-operator-main-registry-operator",
    );
    assert_eq!(str_at(&d.value, "spec.folder"), Some("Main"));
    let json: serde_json::Value =
        serde_json::from_str(str_at(&d.value, "spec.definition").unwrap()).unwrap();
    // What dmt's grafana-dashboards rule asks: a ds_prometheus variable every target uses, no
    // deprecated panel types or intervals.
    let vars = json["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "ds_prometheus"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_ne!(p["type"], "graph", "{title}: graph is deprecated");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${ds_prometheus}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            assert!(
                !expr.contains("interval_rv") && !expr.contains("interval_sx"),
                "{title}"
            );
        }
    }
}

#[test]
fn missing_image_digest_fails_loudly() {
    let err = Render::defaults()
        .set("global.modulesImages.digests.registryOperator.registryOperator=")
        .output()
        .expect_err("rendering without the image digest must fail");
    assert!(
        err.contains("registryOperator.registryOperator has no digest"),
        "{err}"
    );
}

/// Deckhouse applies `openapi/config-values.yaml`'s defaults before rendering; the templates fall
/// back to the same values when a setting is absent. Both renders must be identical.
#[test]
fn template_fallbacks_equal_openapi_defaults() {
    let schema = load_yaml(&repo_root().join("openapi/config-values.yaml"));
    let defaults = schema_defaults(&schema).expect("config-values.yaml declares defaults");
    let mut root = Mapping::new();
    root.insert("registryOperator".into(), defaults.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi-defaults.yaml");
    std::fs::write(&file, serde_yaml::to_string(&root).unwrap()).unwrap();

    let with_defaults = Render::defaults()
        .values(file.to_str().unwrap())
        .output()
        .unwrap();
    let without = Render::defaults().output().unwrap();
    assert_eq!(
        with_defaults, without,
        "openapi defaults {defaults:?} render differently from the templates' fallbacks"
    );
    // And the defaults really are the documented ones.
    for (path, want) in [
        ("logLevel", "info"),
        ("maxConcurrentScans", "16"),
        ("scanConcurrency", "8"),
        ("scanTimeout", "300"),
        ("maxImages", "1000"),
        ("maxTags", "20000"),
        ("maxTagPageMiB", "4"),
        ("bodyIdleTimeout", "10"),
        ("resources.requests.cpu", "50m"),
        ("resources.requests.memory", "64Mi"),
        ("resources.limits.memory", "512Mi"),
    ] {
        let got = at(&defaults, path).unwrap_or_else(|| panic!("no default for {path}"));
        let got = match got {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_string(),
        };
        assert_eq!(got, want, "default of {path}");
    }
}

/// The object a schema's `default`s make (recursively, like Deckhouse's defaulting).
fn schema_defaults(schema: &Value) -> Option<Value> {
    let props = at(schema, "properties").and_then(Value::as_mapping);
    let mut out = match at(schema, "default") {
        Some(Value::Mapping(m)) => Some(m.clone()),
        Some(other) => return Some(other.clone()),
        None => None,
    };
    if let Some(props) = props {
        for (k, sub) in props {
            if let Some(d) = schema_defaults(sub) {
                let m = out.get_or_insert_with(Mapping::new);
                if !d.as_mapping().is_some_and(Mapping::is_empty) || m.contains_key(k) {
                    m.insert(k.clone(), d);
                }
            }
        }
    }
    out.map(Value::Mapping)
}

// ---------------------------------------------------------------------------------------------
// Deckhouse conventions on the rendered objects (what dmt's container, templates and rbac
// linters check)

fn all_renders() -> Vec<(&'static str, Vec<Obj>)> {
    vec![
        ("default", Render::defaults().objects()),
        ("custom", Render::custom().objects()),
        ("cluster", Render::custom().values(VALUES_CLUSTER).objects()),
        (
            "ha",
            Render::defaults()
                .set("global.highAvailability=true")
                .objects(),
        ),
    ]
}

#[test]
fn every_object_carries_deckhouse_labels_and_lives_in_the_module_namespace() {
    for (render, objs) in all_renders() {
        for o in &objs {
            let labels = at(&o.value, "metadata.labels").and_then(Value::as_mapping);
            for (k, v) in [("heritage", "deckhouse"), ("module", MODULE)] {
                assert_eq!(
                    labels.and_then(|l| l.get(k)).and_then(Value::as_str),
                    Some(v),
                    "[{render}] {} lacks label {k}={v}",
                    o.id()
                );
            }
            match (o.kind(), o.namespace()) {
                (
                    "Namespace"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "GrafanaDashboardDefinition",
                    ns,
                ) => {
                    assert_eq!(ns, None, "[{render}] {} is cluster-scoped", o.id())
                }
                ("ServiceMonitor", ns) => assert_eq!(ns, Some("d8-monitoring"), "{}", o.id()),
                (_, ns) => assert_eq!(ns, Some(NAMESPACE), "[{render}] {}", o.id()),
            }
        }
        let ns = find(&objs, "Namespace", NAMESPACE);
        assert_eq!(
            ns.value["metadata"]["labels"]
                .get("prometheus.deckhouse.io/rules-watcher-enabled")
                .and_then(Value::as_str),
            Some("true"),
            "[{render}] d8- namespaces enable Prometheus rules"
        );
        let ca = find(&objs, "ConfigMap", "kube-rbac-proxy-ca.crt");
        assert!(
            ca.value["data"]
                .get("ca.crt")
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE")),
            "kube-rbac-proxy CA in the module namespace"
        );
    }
}

const ALLOWED_PRIORITY_CLASSES: [&str; 11] = [
    "system-node-critical",
    "system-cluster-critical",
    "cluster-critical",
    "cluster-medium",
    "cluster-low",
    "production-high",
    "production-medium",
    "production-low",
    "staging",
    "develop",
    "standby",
];

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

#[test]
fn workloads_follow_deckhouse_container_rules() {
    for (render, objs) in all_renders() {
        let workloads: Vec<&Obj> = objs
            .iter()
            .filter(|o| matches!(o.kind(), "Deployment" | "DaemonSet" | "StatefulSet"))
            .collect();
        assert!(!workloads.is_empty());
        for w in workloads {
            let id = format!("[{render}] {}", w.id());
            assert_eq!(str_at(&w.value, "apiVersion"), Some("apps/v1"), "{id}");
            if w.kind() == "Deployment" {
                let limit = at(&w.value, "spec.revisionHistoryLimit").and_then(Value::as_u64);
                assert!(
                    limit.is_some_and(|l| l <= 2),
                    "{id}: revisionHistoryLimit {limit:?} > 2"
                );
            }
            let pod = at(&w.value, "spec.template.spec").unwrap();
            let pc = str_at(pod, "priorityClassName").unwrap_or_default();
            assert!(
                ALLOWED_PRIORITY_CLASSES.contains(&pc),
                "{id}: priority class {pc:?}"
            );
            assert_ne!(
                at(pod, "hostNetwork").and_then(Value::as_bool),
                Some(true),
                "{id}"
            );

            let psc = at(pod, "securityContext")
                .unwrap_or_else(|| panic!("{id}: no pod securityContext"));
            assert!(is_true(at(psc, "runAsNonRoot")), "{id}: runAsNonRoot");
            let ids = (
                at(psc, "runAsUser").and_then(Value::as_u64),
                at(psc, "runAsGroup").and_then(Value::as_u64),
            );
            assert!(
                matches!(ids, (Some(65534), Some(65534)) | (Some(64535), Some(64535))),
                "{id}: runAsUser:runAsGroup {ids:?} must be nobody or deckhouse"
            );
            let pod_seccomp = str_at(psc, "seccompProfile.type");

            let containers = at(pod, "containers").and_then(Value::as_sequence).unwrap();
            let mut names = BTreeSet::new();
            for c in containers {
                let name = str_at(c, "name").unwrap();
                let cid = format!("{id} container {name}");
                assert!(names.insert(name), "{cid}: duplicate container name");
                let sc =
                    at(c, "securityContext").unwrap_or_else(|| panic!("{cid}: no securityContext"));
                assert!(
                    is_true(at(sc, "readOnlyRootFilesystem")),
                    "{cid}: readOnlyRootFilesystem"
                );
                assert_eq!(
                    at(sc, "allowPrivilegeEscalation").and_then(Value::as_bool),
                    Some(false),
                    "{cid}: allowPrivilegeEscalation"
                );
                assert!(!is_true(at(sc, "privileged")), "{cid}: privileged");
                assert_eq!(
                    at(sc, "capabilities.drop"),
                    Some(&yaml("[ALL]")),
                    "{cid}: drop ALL"
                );
                assert_eq!(
                    at(sc, "capabilities.add"),
                    None,
                    "{cid}: no added capabilities"
                );
                let seccomp = str_at(sc, "seccompProfile.type").or(pod_seccomp);
                assert_eq!(seccomp, Some("RuntimeDefault"), "{cid}: seccomp profile");

                for probe in ["livenessProbe", "readinessProbe"] {
                    let p = at(c, probe).unwrap_or_else(|| panic!("{cid}: no {probe}"));
                    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
                        .iter()
                        .filter(|h| at(p, h).is_some())
                        .count();
                    assert_eq!(handlers, 1, "{cid}: {probe} needs exactly one handler");
                }
                assert!(
                    at(c, "resources.requests.ephemeral-storage").is_some(),
                    "{cid}: ephemeral-storage request"
                );
                let pull = str_at(c, "imagePullPolicy").unwrap_or("IfNotPresent");
                assert_eq!(pull, "IfNotPresent", "{cid}: imagePullPolicy");
                let image = str_at(c, "image").unwrap();
                let digest = image.rsplit_once("@sha256:").map(|(_, d)| d);
                assert!(
                    digest
                        .is_some_and(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())),
                    "{cid}: image {image} is not pinned by digest"
                );
                for port in at(c, "ports")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    let n = at(port, "containerPort").and_then(Value::as_u64).unwrap();
                    assert!(n > 1024, "{cid}: port {n} <= 1024");
                    assert!(at(port, "hostPort").is_none(), "{cid}: hostPort");
                }
                let mut env = BTreeSet::new();
                for e in at(c, "env")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    let n = str_at(e, "name").unwrap();
                    assert!(env.insert(n), "{cid}: env {n} twice");
                }
            }
        }
    }
}

fn quantity(v: &Value) -> f64 {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a quantity: {other:?}"),
    };
    let (num, mult) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((s.clone(), 1.0));
    num.parse::<f64>()
        .unwrap_or_else(|_| panic!("bad quantity {s}"))
        * mult
}

#[test]
fn every_deployment_has_a_vpa_and_a_pdb() {
    for (render, objs) in all_renders() {
        for d in objs.iter().filter(|o| o.kind() == "Deployment") {
            let id = format!("[{render}] {}", d.id());
            let vpa = objs
                .iter()
                .find(|o| {
                    o.kind() == "VerticalPodAutoscaler"
                        && str_at(&o.value, "spec.targetRef.kind") == Some("Deployment")
                        && str_at(&o.value, "spec.targetRef.name") == Some(d.name())
                        && o.namespace() == d.namespace()
                })
                .unwrap_or_else(|| panic!("{id}: no VPA"));
            let mode = str_at(&vpa.value, "spec.updatePolicy.updateMode").unwrap_or_default();
            assert!(
                ["InPlaceOrRecreate", "Initial", "Off"].contains(&mode),
                "{id}: VPA updateMode {mode:?} (not Auto/Recreate)"
            );
            let policies: BTreeMap<&str, &Value> =
                at(&vpa.value, "spec.resourcePolicy.containerPolicies")
                    .and_then(Value::as_sequence)
                    .unwrap()
                    .iter()
                    .map(|p| (str_at(p, "containerName").unwrap(), p))
                    .collect();
            let containers: BTreeSet<&str> = at(&d.value, "spec.template.spec.containers")
                .and_then(Value::as_sequence)
                .unwrap()
                .iter()
                .map(|c| str_at(c, "name").unwrap())
                .collect();
            assert_eq!(
                policies.keys().copied().collect::<BTreeSet<_>>(),
                containers,
                "{id}: VPA container policies vs containers"
            );
            for (name, p) in policies {
                for res in ["cpu", "memory"] {
                    let min = at(p, &format!("minAllowed.{res}")).map(quantity);
                    let max = at(p, &format!("maxAllowed.{res}")).map(quantity);
                    // As dmt's vpa rule: min must not exceed max (lib-helm's policy for
                    // kube-rbac-proxy pins its memory at 25Mi).
                    assert!(
                        matches!((min, max), (Some(a), Some(b)) if a > 0.0 && a <= b),
                        "{id}: VPA {name} {res} min {min:?} max {max:?}"
                    );
                }
            }

            let pod_labels = at(&d.value, "spec.template.metadata.labels")
                .and_then(Value::as_mapping)
                .unwrap();
            let pdb = objs
                .iter()
                .find(|o| {
                    o.kind() == "PodDisruptionBudget"
                        && o.namespace() == d.namespace()
                        && at(&o.value, "spec.selector.matchLabels")
                            .and_then(Value::as_mapping)
                            .is_some_and(|sel| {
                                sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
                            })
                })
                .unwrap_or_else(|| panic!("{id}: no PodDisruptionBudget selects its Pods"));
            assert!(
                at(&pdb.value, "metadata.annotations")
                    .and_then(|a| a.get("helm.sh/hook"))
                    .is_none(),
                "{id}: PDB must not be a hook"
            );
        }
    }
}

#[test]
fn services_and_monitors_use_named_ports() {
    let objs = Render::defaults().objects();
    let d = operator(&objs);
    let port_names: BTreeSet<&str> = at(&d.value, "spec.template.spec.containers")
        .and_then(Value::as_sequence)
        .unwrap()
        .iter()
        .flat_map(|c| {
            at(c, "ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
        })
        .map(|p| str_at(p, "name").unwrap())
        .collect();
    for svc in objs.iter().filter(|o| o.kind() == "Service") {
        for p in at(&svc.value, "spec.ports")
            .and_then(Value::as_sequence)
            .unwrap()
        {
            let target = str_at(p, "targetPort")
                .unwrap_or_else(|| panic!("{}: targetPort must be a port name", svc.id()));
            assert!(
                port_names.contains(target),
                "{}: no container port {target}",
                svc.id()
            );
        }
    }
    let sm = find(&objs, "ServiceMonitor", MODULE);
    assert_eq!(
        str_at(&sm.value, "metadata.labels.prometheus"),
        Some("main")
    );
    assert_eq!(
        str_at(&sm.value, "spec.endpoints.0.port"),
        Some("https-metrics")
    );
    assert_eq!(str_at(&sm.value, "spec.endpoints.0.scheme"), Some("https"));
    // The operator's metrics port is loopback-only: scrapes go through kube-rbac-proxy.
    assert_eq!(
        flag(&args(d), "metrics-addr").as_deref(),
        Some("127.0.0.1:8080")
    );
}

/// RBAC objects sit where dmt's `rbac` linter expects them and grant what the operator needs
/// (issue 4) and nothing more.
/// RBACv2 capabilities (`templates/rbacv2/<use|manage>/<view|edit>.yaml`), as Deckhouse's
/// user-authz aggregates them: `use` for the namespace roles, `manage` for the module's
/// ModuleConfig in its subsystem. People never get Secrets or the status the operator owns.
fn check_rbacv2(o: &Obj, path: &str) {
    let (kind, file) = path.split_once('/').unwrap_or_else(|| panic!("{}", o.id()));
    let action = file.strip_suffix(".yaml").unwrap();
    assert_eq!(o.kind(), "ClusterRole", "{}", o.id());
    let name = match kind {
        "use" => format!("d8:use:capability:module:{MODULE}:{action}"),
        "manage" => format!("d8:manage:permission:module:{MODULE}:{action}"),
        other => panic!("{}: unknown rbacv2 kind {other}", o.id()),
    };
    assert_eq!(o.name(), name);
    let label = |k: &str| {
        at(&o.value, "metadata.labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
    };
    assert_eq!(label("rbac.deckhouse.io/kind"), Some(kind), "{}", o.id());
    let level = match action {
        "view" => "viewer",
        "edit" => "manager",
        other => panic!("{}: unknown action {other}", o.id()),
    };
    assert_eq!(
        label("rbac.deckhouse.io/aggregate-to-kubernetes-as"),
        Some(level),
        "{}",
        o.id()
    );
    if kind == "manage" {
        assert_eq!(label("rbac.deckhouse.io/level"), Some("module"));
        assert_eq!(label("rbac.deckhouse.io/namespace"), Some(NAMESPACE));
    }
    for rule in at(&o.value, "rules").and_then(Value::as_sequence).unwrap() {
        let resources = at(rule, "resources").and_then(Value::as_sequence).unwrap();
        for r in resources.iter().filter_map(Value::as_str) {
            let writes = at(rule, "verbs")
                .and_then(Value::as_sequence)
                .unwrap()
                .iter()
                .any(|v| !matches!(v.as_str(), Some("get" | "list" | "watch")));
            assert!(
                !(r == "secrets" || (r == "registries/status" && writes)),
                "{}: grants {r}",
                o.id()
            );
            if kind == "manage" {
                assert_eq!(r, "moduleconfigs", "{}", o.id());
                assert_eq!(
                    at(rule, "resourceNames"),
                    Some(&yaml(&format!("[{MODULE}]")))
                );
            }
        }
    }
}

#[test]
fn rbac_is_placed_and_least_privilege() {
    let objs = Render::defaults().objects();
    for o in objs.iter().filter(|o| {
        matches!(
            o.kind(),
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
        )
    }) {
        if o.source == "templates/user-authz-cluster-roles.yaml" {
            assert_eq!(
                o.kind(),
                "ClusterRole",
                "{}: only ClusterRoles for user-authz",
                o.id()
            );
            let level = at(&o.value, "metadata.annotations")
                .and_then(|a| a.get("user-authz.deckhouse.io/access-level"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: user-authz.deckhouse.io/access-level", o.id()));
            assert_eq!(
                o.name(),
                format!("d8:user-authz:{MODULE}:{}", level.to_lowercase()),
                "{}",
                o.id()
            );
            continue;
        }
        if let Some(rest) = o.source.strip_prefix("templates/rbacv2/") {
            check_rbacv2(o, rest);
            continue;
        }
        let (component, file) = o
            .source
            .strip_prefix("templates/")
            .and_then(|s| s.rsplit_once('/'))
            .unwrap_or_else(|| {
                panic!(
                    "{}: RBAC belongs in templates/<component>/rbac-*.yaml",
                    o.id()
                )
            });
        let local = component.replace('/', "-");
        match (o.kind(), file) {
            ("ServiceAccount", "rbac-for-us.yaml") => {
                assert_eq!(o.name(), local, "{}", o.id());
                assert_eq!(o.namespace(), Some(NAMESPACE), "{}", o.id());
            }
            ("ClusterRole" | "ClusterRoleBinding", "rbac-for-us.yaml") => {
                assert!(o.name().starts_with(&format!("d8:{MODULE}:")), "{}", o.id())
            }
            ("Role" | "RoleBinding", "rbac-for-us.yaml") => {
                assert!(o.name().starts_with(&local), "{}", o.id());
                assert_eq!(o.namespace(), Some(NAMESPACE), "{}", o.id());
            }
            ("Role" | "RoleBinding", "rbac-to-us.yaml") => {
                assert!(
                    o.name().starts_with(&format!("access-to-{local}-")),
                    "{}",
                    o.id()
                );
                assert_eq!(o.namespace(), Some(NAMESPACE), "{}", o.id());
            }
            _ => panic!("{} is not allowed in {}", o.id(), o.source),
        }
        for rule in at(&o.value, "rules")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for field in ["apiGroups", "resources", "verbs"] {
                for v in at(rule, field)
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    assert_ne!(v.as_str(), Some("*"), "{}: wildcard in {field}", o.id());
                }
            }
        }
    }

    // What the operator can do, as (apiGroup, resource) -> verbs over all its roles.
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for o in objs
        .iter()
        .filter(|o| matches!(o.kind(), "ClusterRole" | "Role"))
    {
        let bound_to_operator = objs.iter().any(|b| {
            matches!(b.kind(), "ClusterRoleBinding" | "RoleBinding")
                && str_at(&b.value, "roleRef.name") == Some(o.name())
                && at(&b.value, "subjects")
                    .and_then(Value::as_sequence)
                    .is_some_and(|ss| {
                        ss.iter().any(|s| {
                            str_at(s, "kind") == Some("ServiceAccount")
                                && str_at(s, "name") == Some(MODULE)
                        })
                    })
        });
        if !bound_to_operator {
            continue;
        }
        for rule in at(&o.value, "rules").and_then(Value::as_sequence).unwrap() {
            let list = |f: &str| -> Vec<String> {
                at(rule, f)
                    .and_then(Value::as_sequence)
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    let scope = if o.kind() == "Role" {
                        format!("{r} (namespaced)")
                    } else {
                        r
                    };
                    granted
                        .entry((g.clone(), scope))
                        .or_default()
                        .extend(list("verbs"));
                }
            }
        }
    }
    let want: BTreeMap<(String, String), BTreeSet<String>> = [
        ("registry.kubecontroller.io", "registries", "get list watch"),
        // Server-side apply of status only.
        ("registry.kubecontroller.io", "registries/status", "patch"),
        // list/watch: the metadata-only watch; get: the Secrets a Registry names.
        ("", "secrets", "get list watch"),
        ("events.k8s.io", "events", "create patch"),
        // Shard and membership Leases; delete sweeps those of replicas long gone.
        (
            "coordination.k8s.io",
            "leases (namespaced)",
            "get list create update delete",
        ),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ]
    .into_iter()
    .map(|(g, r, v)| {
        (
            (g.to_string(), r.to_string()),
            v.split(' ').map(String::from).collect(),
        )
    })
    .collect();
    assert_eq!(granted, want);
}

// ---------------------------------------------------------------------------------------------
// Module files (what dmt's module, openapi, documentation, no-cyrillic and images linters check)

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn module_yaml_and_chart_describe_the_module() {
    let root = repo_root();
    let m = load_yaml(&root.join("module.yaml"));
    assert_eq!(str_at(&m, "name"), Some(MODULE));
    assert_eq!(str_at(&m, "namespace"), Some(NAMESPACE));
    // Deckhouse refuses `Experimental` modules unless `allowExperimentalModules` is on.
    let stage = str_at(&m, "stage").unwrap_or_default();
    assert!(
        ["Preview", "General Availability"].contains(&stage),
        "stage {stage:?} must install without allowExperimentalModules"
    );
    assert!(
        at(&m, "subsystems")
            .and_then(Value::as_sequence)
            .is_some_and(|s| !s.is_empty()),
        "subsystems"
    );
    for lang in ["en", "ru"] {
        assert!(
            str_at(&m, &format!("descriptions.{lang}")).is_some_and(|d| !d.is_empty()),
            "descriptions.{lang}"
        );
    }
    assert!(
        at(&m, "description").is_none(),
        "`description` is deprecated"
    );
    // 1.72 as current modules (and VPA's InPlaceOrRecreate); an external module supporting
    // older Deckhouse would need a `weight` of 900-999 instead.
    assert_eq!(str_at(&m, "requirements.deckhouse"), Some(">= 1.72"));
    assert!(str_at(&m, "requirements.kubernetes").is_some());
    assert!(at(&m, "weight").is_none());

    // deckhouse_lib_helm is a dependency committed packaged under charts/, as modules ship it.
    let chart = load_yaml(&root.join("Chart.yaml"));
    assert_eq!(str_at(&chart, "name"), Some(MODULE));
    let deps = at(&chart, "dependencies")
        .and_then(Value::as_sequence)
        .expect("Chart.yaml dependencies");
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(str_at(&deps[0], "name"), Some("deckhouse_lib_helm"));
    let version = str_at(&deps[0], "version").unwrap();
    assert_eq!(
        str_at(&deps[0], "repository"),
        Some("https://deckhouse.github.io/lib-helm")
    );
    assert!(
        root.join(format!("charts/deckhouse_lib_helm-{version}.tgz"))
            .is_file(),
        "charts/deckhouse_lib_helm-{version}.tgz is committed"
    );
    // The module's own helpers duplicate none of the library's.
    let helpers = std::fs::read_to_string(root.join("templates/_helpers.tpl")).unwrap();
    for dup in [
        "image",
        "labels",
        "security_context",
        "tolerations",
        "node_selector",
    ] {
        assert!(
            !helpers.contains(&format!("registry_operator.{dup}")),
            "templates/_helpers.tpl defines registry_operator.{dup}: lib-helm has it"
        );
    }
}

/// `.helmignore` keeps Helm to Chart.yaml, templates/, charts/ and monitoring/: module metadata,
/// sources and build output stay out of the chart (Helm would otherwise load target/ into memory).
#[test]
fn helmignore_covers_everything_but_the_chart() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join(".helmignore")).unwrap();
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in &patterns {
        assert!(
            !p.contains("templates")
                && !p.contains("Chart.yaml")
                && !p.contains("charts")
                && !p.contains("monitoring"),
            "{p} would hide the chart"
        );
        assert!(!matches!(*p, "*" | "**"), "{p} hides everything");
    }
    let ignored = |name: &str| patterns.iter().any(|p| glob(p.trim_end_matches('/'), name));
    for must in [
        "crds",
        "docs",
        "images",
        "openapi",
        "module.yaml",
        ".werf",
        "werf.yaml",
        "Cargo.toml",
        "target",
        "testenv",
        "tools",
        "hack",
        "README.md",
        ".dmtlint.yaml",
        "bench",
        "examples",
    ] {
        assert!(ignored(must), ".helmignore must list {must}");
    }
    // Like dmt's helmignore-coverage (a warning there too): name what a new root entry needs.
    let chart = [
        "templates",
        "charts",
        "monitoring",
        "Chart.yaml",
        "values.yaml",
        ".helmignore",
        ".git",
    ];
    // Every root entry of the repository (tracked, or new and not git-ignored: a developer's
    // stray local files are their own business).
    let out = Command::new("git")
        .current_dir(&root)
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let roots: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('/').next())
        .map(str::to_string)
        .collect();
    assert!(roots.contains("Chart.yaml"), "{roots:?}");
    let unlisted: Vec<&String> = roots
        .iter()
        .filter(|name| !chart.contains(&name.as_str()) && !ignored(name))
        .collect();
    assert!(
        unlisted.is_empty(),
        "not in .helmignore (helm would pack them; dmt warns): {unlisted:?}"
    );
}

/// Shell-style glob with `*` only (what .helmignore patterns here use).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            rest.char_indices()
                .map(|(i, _)| i)
                .chain([rest.len()])
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Paths (`properties.a.properties.b`) of every `description` in a schema.
fn description_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, sub) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                };
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if key == "description" && sub.is_string() {
                    out.insert(path);
                } else {
                    description_paths(sub, &path, out);
                }
            }
        }
        Value::Sequence(s) => {
            for (i, sub) in s.iter().enumerate() {
                description_paths(sub, &format!("{prefix}.{i}"), out);
            }
        }
        _ => {}
    }
}

fn has_cyrillic(s: &str) -> bool {
    s.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
}

/// Every schema in crds/ and openapi/config-values.yaml has a `doc-ru-` twin that translates every
/// description and nothing that no longer exists.
#[test]
fn schemas_have_complete_russian_twins() {
    let root = repo_root();
    let mut pairs = vec![(
        root.join("openapi/config-values.yaml"),
        root.join("openapi/doc-ru-config-values.yaml"),
    )];
    for entry in std::fs::read_dir(root.join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.starts_with("doc-ru-") {
            pairs.push((path.clone(), path.with_file_name(format!("doc-ru-{name}"))));
        }
    }
    for (base, ru) in pairs {
        assert!(
            ru.is_file(),
            "{} has no Russian twin {}",
            base.display(),
            ru.display()
        );
        let (b, r) = (load_yaml(&base), load_yaml(&ru));
        assert!(r.is_mapping(), "{} is not a YAML mapping", ru.display());
        let (mut bp, mut rp) = (BTreeSet::new(), BTreeSet::new());
        description_paths(&b, "", &mut bp);
        description_paths(&r, "", &mut rp);
        let stale: Vec<_> = rp.difference(&bp).collect();
        let missing: Vec<_> = bp.difference(&rp).collect();
        assert!(
            stale.is_empty(),
            "{} translates what {} lacks: {stale:#?}",
            ru.display(),
            base.display()
        );
        assert!(
            missing.is_empty(),
            "{} leaves untranslated: {missing:#?}",
            ru.display()
        );
        let mut texts = Vec::new();
        collect_descriptions(&r, &mut texts);
        for t in texts {
            assert!(
                has_cyrillic(&t),
                "{}: untranslated description {t:?}",
                ru.display()
            );
        }
        let mut texts = Vec::new();
        collect_descriptions(&b, &mut texts);
        for t in texts {
            assert!(!has_cyrillic(&t), "{}: Cyrillic in {t:?}", base.display());
        }
    }
}

fn collect_descriptions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, sub) in m {
                match (k.as_str(), sub) {
                    (Some("description"), Value::String(s)) => out.push(s.clone()),
                    _ => collect_descriptions(sub, out),
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| collect_descriptions(x, out)),
        _ => {}
    }
}

/// CRDs carry Deckhouse's labels (`module` is what dmt's openapi linter requires).
#[test]
fn crds_are_labelled_for_the_module() {
    let root = repo_root();
    for entry in std::fs::read_dir(root.join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let crd = load_yaml(&path);
        assert_eq!(
            str_at(&crd, "apiVersion"),
            Some("apiextensions.k8s.io/v1"),
            "{}",
            path.display()
        );
        assert_eq!(
            str_at(&crd, "metadata.labels.module"),
            Some(MODULE),
            "{}",
            path.display()
        );
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("doc-ru-")
        {
            assert_eq!(
                str_at(&crd, "metadata.labels.heritage"),
                Some("deckhouse"),
                "{}",
                path.display()
            );
        }
    }
}

/// The enum paths `.dmtlint.yaml` exempts from dmt's CamelCase rule, each with its reason.
fn enum_exclusions() -> BTreeSet<String> {
    let cfg = load_yaml(&repo_root().join(".dmtlint.yaml"));
    at(&cfg, "linters-settings.openapi.exclude-rules.enum")
        .and_then(Value::as_sequence)
        .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn check_enums(v: &Value, path: &str, excluded: &BTreeSet<String>, file: &Path) {
    let Value::Mapping(m) = v else {
        if let Value::Sequence(s) = v {
            for (i, sub) in s.iter().enumerate() {
                check_enums(sub, &format!("{path}[{i}]"), excluded, file);
            }
        }
        return;
    };
    for (k, sub) in m {
        let key = k.as_str().unwrap_or_default();
        let p = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        if key == "enum" && !excluded.contains(path) {
            for val in sub
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let camel = val
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphabetic() || c.is_uppercase())
                    && val.char_indices().all(|(i, c)| {
                        c.is_alphanumeric()
                            || (c == '.'
                                && i > 0
                                && val[..i].chars().last().is_some_and(|p| p.is_ascii_digit()))
                    });
                assert!(
                    camel,
                    "{}: enum {p} value {val:?} must be CamelCase (or excluded in .dmtlint.yaml)",
                    file.display()
                );
            }
        } else {
            check_enums(sub, &p, excluded, file);
        }
    }
}

#[test]
fn enums_are_camel_case_unless_exempted() {
    let root = repo_root();
    let excluded = enum_exclusions();
    assert!(
        excluded.contains("properties.logLevel"),
        "the seed's lowercase log levels are exempted"
    );
    for dir in ["openapi", "crds"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("doc-ru-") || !name.ends_with(".yaml") {
                continue;
            }
            check_enums(&load_yaml(&path), "", &excluded, &path);
        }
    }
}

/// Every rule `.dmtlint.yaml` turns off or narrows has a comment saying why.
#[test]
fn dmtlint_exemptions_carry_reasons() {
    let text = std::fs::read_to_string(repo_root().join(".dmtlint.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let exempts = t == "disable: true"
            || t.starts_with("impact:")
            || (t.starts_with("- ") && !t.starts_with("- #"));
        if !exempts {
            continue;
        }
        let reason = lines[..i]
            .iter()
            .rev()
            .take_while(|l| !l.trim().is_empty())
            .any(|l| l.trim_start().starts_with('#'));
        assert!(
            reason,
            ".dmtlint.yaml line {}: {t:?} needs a `# reason` comment above it",
            i + 1
        );
    }
}

fn front_matter(text: &str) -> Option<Value> {
    let rest = text.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    serde_yaml::from_str(&rest[..end]).ok()
}

#[test]
fn docs_are_bilingual_and_well_formed() {
    let docs = repo_root().join("docs");
    let mut english = BTreeSet::new();
    let mut russian = BTreeSet::new();
    for entry in std::fs::read_dir(&docs).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(base) = name.strip_suffix(".ru.md") {
            russian.insert(base.to_string());
        } else if let Some(base) = name.strip_suffix(".md") {
            english.insert(base.to_string());
        }
    }
    for required in ["README", "CONFIGURATION", "CR", "FAQ"] {
        assert!(english.contains(required), "docs/{required}.md");
    }
    assert_eq!(
        english, russian,
        "every docs/X.md needs docs/X.ru.md and the reverse"
    );
    for base in &english {
        for (file, ru) in [
            (format!("{base}.md"), false),
            (format!("{base}.ru.md"), true),
        ] {
            let text = std::fs::read_to_string(docs.join(&file)).unwrap();
            let fm =
                front_matter(&text).unwrap_or_else(|| panic!("docs/{file}: no YAML front matter"));
            assert!(
                str_at(&fm, "title").is_some_and(|t| !t.is_empty()),
                "docs/{file}: title"
            );
            assert!(
                at(&fm, "lang").is_none(),
                "docs/{file}: no `lang` key in front matter"
            );
            if ru {
                assert!(has_cyrillic(&text), "docs/{file} is not Russian");
            } else {
                for (n, line) in text.lines().enumerate() {
                    assert!(
                        !has_cyrillic(line),
                        "docs/{file}:{}: Cyrillic in English docs",
                        n + 1
                    );
                }
            }
            check_markdown(&file, &text);
        }
    }
}

/// The markdownlint rules of dmt's docs linter that matter for hand-written docs.
fn check_markdown(file: &str, text: &str) {
    assert!(
        text.ends_with('\n') && !text.ends_with("\n\n"),
        "docs/{file}: one trailing newline (MD047)"
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut in_code = false;
    let mut prev_blank = true;
    let mut last_heading = 1usize;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        assert!(!line.contains('\t'), "docs/{file}:{n}: hard tab (MD010)");
        assert!(
            !line.ends_with(' '),
            "docs/{file}:{n}: trailing space (MD009)"
        );
        assert!(line.len() <= 1000, "docs/{file}:{n}: line too long (MD013)");
        let t = line.trim_start();
        if t.starts_with("```") {
            if !in_code {
                assert!(
                    t.len() > 3,
                    "docs/{file}:{n}: fenced code needs a language (MD040)"
                );
                assert!(
                    prev_blank || i == 0,
                    "docs/{file}:{n}: blank line before code fence (MD031)"
                );
            } else {
                let next_blank = lines.get(i + 1).is_none_or(|l| l.trim().is_empty());
                assert!(
                    next_blank,
                    "docs/{file}:{n}: blank line after code fence (MD031)"
                );
            }
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let level = line.chars().take_while(|c| *c == '#').count();
            assert!(
                line[level..].starts_with(' '),
                "docs/{file}:{n}: space after # (MD018)"
            );
            assert!(
                level >= 2,
                "docs/{file}:{n}: the title is in front matter; no # heading (MD025)"
            );
            assert!(
                level <= last_heading + 1,
                "docs/{file}:{n}: heading level jumps (MD001)"
            );
            last_heading = level;
            assert!(
                prev_blank,
                "docs/{file}:{n}: blank line before heading (MD022)"
            );
            assert!(
                lines.get(i + 1).is_none_or(|l| l.trim().is_empty()),
                "docs/{file}:{n}: blank line after heading (MD022)"
            );
            assert!(
                !line.trim_end().ends_with([':', '.', ',', ';', '!']),
                "docs/{file}:{n}: heading punctuation (MD026)"
            );
        }
        if !in_code && i > 0 {
            assert!(
                !(line.trim().is_empty() && lines[i - 1].trim().is_empty()),
                "docs/{file}:{n}: double blank line (MD012)"
            );
        }
        prev_blank = line.trim().is_empty();
    }
    assert!(!in_code, "docs/{file}: unclosed code fence");
}

/// dmt's no-cyrillic linter: no Russian outside files meant for it (doc-ru-*, *.ru.*, module.yaml).
#[test]
fn no_cyrillic_outside_russian_files() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), ".git" | "target" | "node_modules" | ".demo") {
                    walk(&path, out);
                }
            } else if [".yaml", ".yml", ".json", ".go"]
                .iter()
                .any(|e| name.ends_with(e))
                && !name.starts_with("doc-ru-")
                && !name.contains(".ru.")
                && name != "module.yaml"
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root(), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !has_cyrillic(line),
                "{}:{}: Cyrillic letters",
                f.display(),
                n + 1
            );
        }
    }
}

/// dmt's images linter on werf files: final images start from a Deckhouse `base/` image, no
/// deprecated `artifact:`, no user override.
#[test]
fn werf_images_start_from_base_images() {
    let root = repo_root();
    let mut files = vec![];
    for entry in std::fs::read_dir(root.join("images")).unwrap() {
        let f = entry.unwrap().path().join("werf.inc.yaml");
        if f.is_file() {
            files.push(f);
        }
    }
    assert!(!files.is_empty(), "images/*/werf.inc.yaml");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut finals = 0;
        for doc in text.split("\n---") {
            let field = |k: &str| {
                doc.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}:")))
                    .map(|v| v.trim().to_string())
            };
            assert!(
                field("artifact").is_none(),
                "{}: use image + final: false",
                f.display()
            );
            assert!(
                !doc.contains("\n    user:"),
                "{}: no imageSpec.config.user override",
                f.display()
            );
            if field("image").is_none() || field("final").as_deref() == Some("false") {
                continue;
            }
            finals += 1;
            let from = field("fromImage").unwrap_or_default();
            assert!(
                from.starts_with("base/") || from.starts_with("common/"),
                "{}: final image must start from base/... (fromImage: {from:?})",
                f.display()
            );
        }
        assert_eq!(finals, 1, "{}: exactly one final image", f.display());
    }
}
