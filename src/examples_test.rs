//! The example manifests under `deploy/examples/` parse into the types they claim, and what they
//! configure fits together: the sidecar's flags are valid, its pod labels come from the Downward
//! API, the scrape port is its port, and the gate's queries name its metrics.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use serde_json::Value;
use tollgate_logmetrics::config::parse_flags;

use crate::api::RolloutGate;

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/deploy/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn field_ref(c: &Container, name: &str) -> Option<String> {
    let env = c.env.as_ref()?.iter().find(|e| e.name == name)?;
    Some(
        env.value_from
            .as_ref()?
            .field_ref
            .as_ref()?
            .field_path
            .clone(),
    )
}

fn check(file: &str, kinds: &[&str]) {
    let docs = documents(file);
    let seen: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(seen, kinds, "{file}");
    let rollout = &docs[0];
    let template: PodTemplateSpec =
        serde_json::from_value(rollout["spec"]["template"].clone()).expect("pod template");
    let spec = template.spec.expect("pod spec");
    let sidecar = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.args.as_ref().and_then(|a| a.first()).map(String::as_str) == Some("logmetrics"))
        .unwrap_or_else(|| panic!("{file}: no logmetrics container"));
    let args = sidecar.args.clone().unwrap_or_default();
    // args[0] is the subcommand itself.
    let flags: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let config = parse_flags(&flags).unwrap_or_else(|e| panic!("{file}: sidecar flags: {e}"));
    assert_eq!(
        field_ref(sidecar, "POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        field_ref(sidecar, "POD_TEMPLATE_HASH").as_deref(),
        Some("metadata.labels['rollouts-pod-template-hash']")
    );
    let annotations = template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    let port = config.listen.port().to_string();
    assert_eq!(annotations.get("prometheus.io/port"), Some(&port), "{file}");
    let declared = sidecar
        .ports
        .iter()
        .flatten()
        .any(|p| p.container_port.to_string() == port);
    assert!(declared, "{file}: the sidecar declares its port");

    let gate: RolloutGate = serde_json::from_value(docs[1].clone()).expect("RolloutGate");
    crate::compile::compile(&gate.spec).unwrap_or_else(|e| panic!("{file}: gate: {e}"));
    let metric = format!("{}_requests_total", config.prefix);
    let ratio = gate.spec.checks[0].ratio.as_ref().expect("a ratio check");
    assert!(
        ratio.denominator.contains(&metric),
        "{file}: gate reads {metric}"
    );
    assert!(
        ratio
            .denominator
            .contains("rollouts_pod_template_hash=\"{{ hash }}\"")
    );

    if let Some(monitor) = docs.get(2) {
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        let port_name = sidecar.ports.iter().flatten().find_map(|p| p.name.clone());
        assert_eq!(endpoint["port"].as_str(), port_name.as_deref(), "{file}");
    }
}

#[test]
fn emptydir_example_is_consistent() {
    check(
        "litellm-logmetrics-emptydir.yaml",
        &["Rollout", "RolloutGate", "PodMonitor"],
    );
}

#[test]
fn stdout_tee_example_is_consistent() {
    check(
        "litellm-logmetrics-stdout-tee.yaml",
        &["Rollout", "RolloutGate"],
    );
}
