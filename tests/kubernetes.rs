//! The Kubernetes manifests in `deploy/kubernetes` work as shipped:
//!
//! - the three kustomizations (the fleet Deployment, `deploy/kubernetes`,
//!   the sharded StatefulSet, `deploy/kubernetes/sharded`, and the sidecar
//!   example, `deploy/kubernetes/sidecar`) render with
//!   `kubectl kustomize`, with the objects the README promises wired to each
//!   other (selectors match labels, ports match names, the password is a
//!   file from a mounted Secret, probes, read-only root, requests and
//!   limits);
//! - the core kinds pass `kubernetes-validate --strict` (PyPI, offline
//!   schemas);
//! - the ServiceMonitor, PodMonitor and PrometheusRules match the CRD
//!   schemas of a pinned Prometheus Operator release
//!   (`tests/fixtures/prometheus-operator`, `scripts/validate-monitoring.py`);
//! - `deploy/kubernetes/monitoring/prometheusrule.yaml` is what
//!   `scripts/gen-prometheusrule.sh` makes of `alerts/` today, and holds the
//!   same groups;
//! - the dashboards ConfigMaps carry every `dashboards/*.json`, unchanged,
//!   labelled for the Grafana sidecar;
//! - every exporter flag the deploy files use exists in `--help`.
//!
//! A missing kubectl, kubernetes-validate or Python jsonschema skips the
//! test that needs it with a message; with `CI=true` it fails instead
//! (scripts/test.sh installs them, kubectl is part of the machine image).

mod common;

use common::skip;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

const EXPORTER: &str = env!("CARGO_BIN_EXE_redis-vitals");
const TOOL_DEADLINE: Duration = Duration::from_secs(60);
const FLEET: &str = "deploy/kubernetes";
const SIDECAR: &str = "deploy/kubernetes/sidecar";
const SHARDED: &str = "deploy/kubernetes/sharded";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "$ {what}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `program args` in the repository with `stdin` as input; None when
/// the program is not installed.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Option<Output> {
    let mut child = match Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run {program}: {e}"),
    };
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(TOOL_DEADLINE)
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{program} {args:?} did not finish within {TOOL_DEADLINE:?}")
        })
        .expect("wait");
    let _ = writer.join();
    Some(out)
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// `kubectl kustomize dir` as YAML text; None (after a skip message) when
/// kubectl is not installed.
fn render(dir: &str) -> Option<String> {
    let Some(out) = run(&kubectl(), &["kustomize", dir], b"") else {
        skip(&format!(
            "kubectl not installed: cannot render {dir} (KUBECTL=/path overrides)"
        ));
        return None;
    };
    let report = describe(&format!("kubectl kustomize {dir}"), &out);
    assert!(out.status.success(), "{report}");
    Some(String::from_utf8(out.stdout).expect("UTF-8 output"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn kind_name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        s(v, &["metadata", "name"]).as_str().unwrap_or("?")
    )
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = find(objects, kind);
    assert_eq!(found.len(), 1, "want one {kind}, found {}", found.len());
    found[0]
}

/// A non-empty matchLabels (or selector map) is a subset of `labels`.
fn assert_selects(what: &str, selector: &Value, labels: &Value) {
    let sel = selector
        .as_mapping()
        .unwrap_or_else(|| panic!("{what}: selector is not a map: {selector:?}"));
    assert!(!sel.is_empty(), "{what}: empty selector");
    for (k, v) in sel {
        assert_eq!(
            &labels[k.as_str().unwrap()],
            v,
            "{what}: selector {k:?}={v:?} does not match labels {labels:?}"
        );
    }
}

/// Checks what both variants promise about the exporter container in `pod`
/// (a pod template spec).
fn assert_exporter_container(what: &str, pod: &Value) {
    let containers = pod["containers"].as_sequence().expect("containers");
    let c = containers
        .iter()
        .find(|c| c["name"] == "redis-vitals")
        .unwrap_or_else(|| panic!("{what}: no redis-vitals container"));
    let image = c["image"].as_str().unwrap();
    assert!(
        image.starts_with("localhost/redis-vitals:"),
        "{what}: kustomize did not set the image: {image}"
    );
    assert_eq!(
        s(c, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true),
        "{what}"
    );
    assert_eq!(
        s(c, &["securityContext", "allowPrivilegeEscalation"]).as_bool(),
        Some(false),
        "{what}"
    );
    assert_eq!(
        s(c, &["securityContext", "capabilities", "drop"])[0],
        "ALL",
        "{what}"
    );
    let non_root = s(pod, &["securityContext", "runAsNonRoot"]).as_bool() == Some(true)
        || s(c, &["securityContext", "runAsNonRoot"]).as_bool() == Some(true);
    assert!(non_root, "{what}: runAsNonRoot not set");
    assert_eq!(s(c, &["livenessProbe", "httpGet", "path"]), "/-/healthy");
    assert_eq!(s(c, &["readinessProbe", "httpGet", "path"]), "/-/ready");
    for key in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                s(c, &["resources", key, res]).is_string(),
                "{what}: no resources.{key}.{res}"
            );
        }
    }
    assert_eq!(s(c, &["ports"])[0]["containerPort"], 9121);
    assert_eq!(s(c, &["ports"])[0]["name"], "http-metrics");

    // The password: a file from a mounted Secret, never an env value.
    let env = c["env"].as_sequence().expect("env");
    assert!(
        env.iter().all(|e| e["name"] != "REDIS_PASSWORD"),
        "{what}: password in the environment"
    );
    let file = env
        .iter()
        .find(|e| e["name"] == "REDIS_PASSWORD_FILE")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{what}: no REDIS_PASSWORD_FILE"));
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("{what}: {file} is under no volume mount"));
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(
        volume["secret"]["secretName"].is_string(),
        "{what}: {file} is not from a Secret: {volume:?}"
    );
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn fleet_base_renders_wired_together() {
    let Some(yaml) = render(FLEET) else { return };
    let objects = docs(&yaml);
    let kinds: Vec<String> = objects.iter().map(kind_name).collect();

    let deploy = one(&objects, "Deployment");
    let pod_labels = s(deploy, &["spec", "template", "metadata", "labels"]);
    assert_selects(
        "Deployment",
        s(deploy, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    assert_eq!(s(deploy, &["spec", "replicas"]), 1);
    let pod = s(deploy, &["spec", "template", "spec"]);
    assert_exporter_container("fleet Deployment", pod);
    assert_eq!(pod["automountServiceAccountToken"], false);

    // The config ConfigMap is the generated one (hash suffix).
    let config_map = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("config volume");
    assert!(
        config_map.starts_with("redis-vitals-config-")
            && kinds.contains(&format!("ConfigMap/{config_map}")),
        "{config_map} not generated: {kinds:?}"
    );

    let service = one(&objects, "Service");
    assert_selects("Service", s(service, &["spec", "selector"]), pod_labels);
    assert_eq!(
        s(service, &["spec", "ports"])[0]["targetPort"],
        "http-metrics"
    );

    let monitor = one(&objects, "ServiceMonitor");
    assert_selects(
        "ServiceMonitor",
        s(monitor, &["spec", "selector", "matchLabels"]),
        s(service, &["metadata", "labels"]),
    );
    assert_eq!(
        s(monitor, &["spec", "endpoints"])[0]["port"],
        s(service, &["spec", "ports"])[0]["name"]
    );
    assert!(s(monitor, &["metadata", "labels", "release"]).is_string());

    let policy = one(&objects, "NetworkPolicy");
    assert_selects(
        "NetworkPolicy",
        s(policy, &["spec", "podSelector", "matchLabels"]),
        pod_labels,
    );
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_selects(
        "PodDisruptionBudget",
        s(pdb, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    // A single replica with minAvailable: 1 would block every node drain.
    assert!(s(pdb, &["spec", "minAvailable"]).is_null());

    assert_eq!(find(&objects, "PrometheusRule").len(), 2, "{kinds:?}");
    assert_dashboards(&objects);
}

#[test]
fn plain_manifests_have_their_own_selectors() {
    // Read without kustomize: no selector is left for kustomize to fill.
    for file in [
        "deployment.yaml",
        "service.yaml",
        "servicemonitor.yaml",
        "networkpolicy.yaml",
        "poddisruptionbudget.yaml",
        "sidecar/redis.yaml",
        "sidecar/podmonitor.yaml",
        "sharded/statefulset.yaml",
        "sharded/service.yaml",
        "sharded/podmonitor.yaml",
        "sharded/poddisruptionbudget.yaml",
    ] {
        let text = fs::read_to_string(root().join(FLEET).join(file)).unwrap();
        for doc in docs(&text) {
            for path in [
                &["spec", "selector", "matchLabels"][..],
                &["spec", "podSelector", "matchLabels"][..],
            ] {
                let sel = s(&doc, path);
                if !sel.is_null() {
                    assert!(
                        sel.as_mapping().is_some_and(|m| !m.is_empty()),
                        "{file}: empty {path:?}"
                    );
                }
            }
            if doc["kind"] == "Service" {
                assert!(s(&doc, &["spec", "selector"])
                    .as_mapping()
                    .is_some_and(|m| !m.is_empty()));
            }
        }
    }
}

#[test]
fn sidecar_example_renders_wired_together() {
    let Some(yaml) = render(SIDECAR) else { return };
    let objects = docs(&yaml);
    let deploy = one(&objects, "Deployment");
    let pod_labels = s(deploy, &["spec", "template", "metadata", "labels"]);
    assert_selects(
        "Deployment",
        s(deploy, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    let pod = s(deploy, &["spec", "template", "spec"]);
    assert_exporter_container("sidecar", pod);
    let args: Vec<&str> = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis-vitals")
        .unwrap()["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--redis.addr=redis://localhost:6379"));
    assert!(args.contains(&"--poll.interval=15s"));

    let monitor = one(&objects, "PodMonitor");
    assert_selects(
        "PodMonitor",
        s(monitor, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    let endpoint = &s(monitor, &["spec", "podMetricsEndpoints"])[0];
    assert_eq!(endpoint["port"], "http-metrics");
    // Following scrapes: one poll per scrape, so the two intervals agree.
    let interval = endpoint["interval"].as_str().unwrap();
    assert!(
        args.contains(&format!("--poll.interval={interval}").as_str()),
        "PodMonitor interval {interval} differs from the exporter's {args:?}"
    );
    assert_eq!(find(&objects, "PrometheusRule").len(), 2);
    assert_dashboards(&objects);
}

#[test]
fn sharded_example_renders_wired_together() {
    let Some(yaml) = render(SHARDED) else { return };
    let objects = docs(&yaml);
    let kinds: Vec<String> = objects.iter().map(kind_name).collect();
    let set = one(&objects, "StatefulSet");
    let pod_labels = s(set, &["spec", "template", "metadata", "labels"]);
    assert_selects(
        "StatefulSet",
        s(set, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    let pod = s(set, &["spec", "template", "spec"]);
    assert_exporter_container("sharded StatefulSet", pod);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis-vitals")
        .unwrap();
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();

    // One share per pod: --shard.count is the number of replicas, and the
    // index is the pod's own name (the ordinal at its end).
    let replicas = s(set, &["spec", "replicas"]).as_u64().expect("replicas");
    assert_eq!(replicas, 3);
    assert!(
        args.contains(&format!("--shard.count={replicas}").as_str()),
        "--shard.count differs from spec.replicas {replicas}: {args:?}"
    );
    let index_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("--shard.index="))
        .unwrap_or_else(|| panic!("no --shard.index: {args:?}"));
    let var = index_arg
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--shard.index={index_arg} is not a $(VAR)"));
    let env = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == var)
        .unwrap_or_else(|| panic!("{var} not in the container's env"));
    assert_eq!(
        s(env, &["valueFrom", "fieldRef", "fieldPath"]),
        "metadata.name"
    );
    // Every pod name the StatefulSet makes is an index the exporter takes,
    // and the count and index are accepted together.
    let name = s(set, &["metadata", "name"]).as_str().unwrap();
    for i in 0..replicas {
        let pod_name = format!("{name}-{i}");
        assert_eq!(
            redis_vitals::config::parse_shard_index(&pod_name),
            Ok(i as u32)
        );
        let cfg = redis_vitals::config::Config::from_args([
            "redis-vitals",
            "--shard.count",
            &replicas.to_string(),
            "--shard.index",
            &pod_name,
        ])
        .unwrap_or_else(|e| panic!("{pod_name}: {e}"));
        assert_eq!(cfg.discovery.shard.index, i as u32);
    }
    let config_map = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("config volume");
    assert!(
        config_map.starts_with("redis-vitals-sharded-config-")
            && kinds.contains(&format!("ConfigMap/{config_map}")),
        "{config_map} not generated: {kinds:?}"
    );

    // The headless Service the StatefulSet names.
    let service = one(&objects, "Service");
    assert_eq!(
        s(set, &["spec", "serviceName"]),
        s(service, &["metadata", "name"])
    );
    assert_eq!(s(service, &["spec", "clusterIP"]), "None");
    assert_selects("Service", s(service, &["spec", "selector"]), pod_labels);

    // Prometheus scrapes every pod.
    let monitor = one(&objects, "PodMonitor");
    assert_selects(
        "PodMonitor",
        s(monitor, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    assert_eq!(
        s(monitor, &["spec", "podMetricsEndpoints"])[0]["port"],
        "http-metrics"
    );
    assert!(s(monitor, &["metadata", "labels", "release"]).is_string());
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_selects(
        "PodDisruptionBudget",
        s(pdb, &["spec", "selector", "matchLabels"]),
        pod_labels,
    );
    // Not the fleet Deployment's labels: both can run side by side.
    let fleet = fs::read_to_string(root().join(FLEET).join("deployment.yaml")).unwrap();
    let fleet = &docs(&fleet)[0];
    assert_ne!(
        s(fleet, &["spec", "template", "metadata", "labels"]),
        pod_labels
    );
    assert_eq!(find(&objects, "PrometheusRule").len(), 2, "{kinds:?}");
    assert_dashboards(&objects);
}

/// The dashboards ConfigMaps hold every dashboards/*.json unchanged,
/// labelled for the Grafana sidecar.
fn assert_dashboards(objects: &[Value]) {
    let mut want: BTreeSet<String> = fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(want.len(), 4, "dashboards: {want:?}");
    for cm in find(objects, "ConfigMap") {
        if s(cm, &["metadata", "labels", "grafana_dashboard"]) != "1" {
            continue;
        }
        for (key, value) in s(cm, &["data"]).as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            let file = fs::read_to_string(root().join("dashboards").join(key))
                .unwrap_or_else(|e| panic!("ConfigMap key {key}: {e}"));
            assert_eq!(value.as_str(), Some(file.as_str()), "{key} differs");
            assert!(want.remove(key), "{key} in two ConfigMaps");
        }
    }
    assert!(want.is_empty(), "dashboards without a ConfigMap: {want:?}");
}

#[test]
fn core_kinds_pass_kubernetes_validate() {
    let installed = run("python3", &["-m", "kubernetes_validate", "--version"], b"")
        .is_some_and(|o| o.status.success());
    if !installed {
        return skip(
            "kubernetes-validate not installed \
             (python3 -m pip install kubernetes-validate==1.32.0)",
        );
    }
    for dir in [FLEET, SIDECAR, SHARDED] {
        let Some(yaml) = render(dir) else { return };
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("rendered.yaml");
        fs::write(&file, &yaml).unwrap();
        // Against Kubernetes 1.30 so that older clusters are covered too;
        // everything here is stable API (v1, apps/v1, policy/v1,
        // networking.k8s.io/v1).
        let out = run(
            "python3",
            &[
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                "1.30.0",
                file.to_str().unwrap(),
            ],
            b"",
        )
        .expect("python3");
        let report = describe(&format!("kubernetes-validate --strict {dir}"), &out);
        assert!(out.status.success(), "{report}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every core object validated; only the Operator's kinds (checked
        // by monitoring_kinds_match_the_operator_crds) lack a schema here.
        for obj in docs(&yaml) {
            let api = obj["apiVersion"].as_str().unwrap();
            let kind = obj["kind"].as_str().unwrap().to_lowercase();
            let name = s(&obj, &["metadata", "name"]).as_str().unwrap();
            if api.starts_with("monitoring.coreos.com/") {
                continue;
            }
            assert!(
                all.contains(&format!("passed for resource {kind}/{name} ")),
                "{kind}/{name} not validated\n{report}"
            );
        }
        for line in all.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(line.contains("monitoring.coreos.com/v1"), "{report}");
        }
    }
}

#[test]
fn monitoring_kinds_match_the_operator_crds() {
    let have_jsonschema =
        run("python3", &["-c", "import jsonschema, yaml"], b"").is_some_and(|o| o.status.success());
    if !have_jsonschema {
        return skip(
            "python3 with jsonschema and PyYAML not available \
             (both come with `python3 -m pip install kubernetes-validate==1.32.0`)",
        );
    }
    let mut kinds = BTreeSet::new();
    for dir in [FLEET, SIDECAR, SHARDED] {
        let Some(yaml) = render(dir) else { return };
        let out = run(
            "python3",
            &[
                "scripts/validate-monitoring.py",
                "tests/fixtures/prometheus-operator",
            ],
            yaml.as_bytes(),
        )
        .expect("python3");
        let report = describe(
            &format!("kubectl kustomize {dir} | scripts/validate-monitoring.py"),
            &out,
        );
        assert!(out.status.success(), "{report}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rest) = line.strip_prefix("ok ") {
                kinds.insert(rest.split('/').next().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    );
}

/// The checker rejects what the API server would: the test above is not
/// vacuous.
#[test]
fn crd_checker_rejects_bad_objects() {
    let have_jsonschema =
        run("python3", &["-c", "import jsonschema, yaml"], b"").is_some_and(|o| o.status.success());
    if !have_jsonschema {
        return skip("python3 with jsonschema and PyYAML not available");
    }
    let bad = "\
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: bad
spec:
  selector:
    matchLabels:
      app: x
  endpoints:
    - port: http-metrics
      interval: 15 seconds
      scheme: ftp
      bogusField: 1
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: bad
spec:
  groups:
    - name: g
      rules:
        - alert: NoExpr
";
    let out = run(
        "python3",
        &[
            "scripts/validate-monitoring.py",
            "tests/fixtures/prometheus-operator",
        ],
        bad.as_bytes(),
    )
    .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for needle in [
        "spec.endpoints.0.interval",
        "'ftp' is not one of",
        "'bogusField' was unexpected",
        "'expr' is a required property",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in\n{stdout}");
    }
}

#[test]
fn prometheusrule_is_generated_from_alerts() {
    let generated = "deploy/kubernetes/monitoring/prometheusrule.yaml";
    let out = run("bash", &["scripts/gen-prometheusrule.sh", "-"], b"").expect("bash");
    let report = describe("scripts/gen-prometheusrule.sh -", &out);
    assert!(out.status.success(), "{report}");
    let committed = fs::read_to_string(root().join(generated)).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "{generated} differs from what scripts/gen-prometheusrule.sh makes of alerts/: \
         run scripts/gen-prometheusrule.sh and commit the result"
    );

    // And the copy means the same: each PrometheusRule's groups equal its
    // rule file's, parsed.
    let rules = docs(&committed);
    assert_eq!(rules.len(), 2);
    for (rule, file) in rules.iter().zip([
        "alerts/redis-vitals.recording.yml",
        "alerts/redis-vitals.rules.yml",
    ]) {
        let source: Value =
            serde_yaml_ng::from_str(&fs::read_to_string(root().join(file)).unwrap()).unwrap();
        assert_eq!(rule["kind"], "PrometheusRule");
        assert_eq!(
            s(rule, &["spec", "groups"]),
            &source["groups"],
            "{} holds other groups than {file}",
            kind_name(rule)
        );
        assert!(source["groups"]
            .as_sequence()
            .is_some_and(|g| !g.is_empty()));
    }
}

/// Every `--flag` that a deploy file passes to the exporter exists.
#[test]
fn deploy_files_use_only_existing_flags() {
    let out = run(EXPORTER, &["--help"], b"").expect("exporter");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut files = Vec::new();
    collect(&root().join("deploy"), &mut files);
    let mut checked = 0;
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            for flag in flags_in(line) {
                checked += 1;
                assert!(
                    help.contains(&format!("{flag} ")),
                    "{}:{}: {flag} is not an option of redis-vitals (--help)",
                    file.display(),
                    i + 1
                );
            }
        }
    }
    assert!(checked >= 5, "found only {checked} flags in deploy/");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| {
            ["yaml", "yml", "service", "md", "toml"].contains(&e.to_str().unwrap())
        }) {
            out.push(path);
        }
    }
}

/// `--section.name` tokens: the exporter's flags all have a dot.
fn flags_in(line: &str) -> Vec<String> {
    let sections = [
        "redis", "poll", "web", "log", "config", "signals", "cluster", "shard",
    ];
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("--") {
        rest = &rest[i + 2..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '.' || *c == '-')
            .collect();
        let token = token.trim_end_matches(['.', '-']);
        if let Some((section, _)) = token.split_once('.') {
            if sections.contains(&section) {
                found.push(format!("--{token}"));
            }
        }
    }
    found
}
