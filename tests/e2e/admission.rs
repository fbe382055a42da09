//! The RolloutGate CRD as the real API server enforces it: a sensible gate is accepted, and
//! nonsense is rejected at admission with a message a person understands.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use tollgate::gate::RolloutGate;

use crate::support::TestNamespace;

fn gate(spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": "g"}, "spec": spec,
    }))
    .expect("gate manifest")
}

fn valid() -> Value {
    json!({
        "rollouts": {"name": "litellm"},
        "prometheus": {"address": "http://prometheus:9090"},
        "checks": [{
            "name": "error-rate",
            "ratio": {"numerator": "sum(rate(errors_total[1m]))", "denominator": "sum(rate(requests_total[1m]))"},
            "threshold": {"op": "<=", "value": 0.05}
        }]
    })
}

/// The valid gate, broken in one way.
fn broken(what: &str) -> Value {
    let mut s = valid();
    let check = &mut s["checks"][0];
    match what {
        "both name and selector" => s["rollouts"]["selector"] = json!({"matchLabels": {"a": "b"}}),
        "no source" => s["prometheus"] = Value::Null,
        "two rules" => check["condition"] = json!("value < 1.0"),
        "query and ratio" => check["query"] = json!("up"),
        "duplicate names" => {
            let copy = check.clone();
            s["checks"] = json!([copy.clone(), copy]);
        }
        "bad duration" => s["interval"] = json!("5 minutes"),
        "bad operator" => check["threshold"]["op"] = json!("=<"),
        "no checks" => s["checks"] = json!([]),
        "empty tolerance" => {
            check["threshold"] = Value::Null;
            check["againstStable"] = json!({});
        }
        "negative limit" => s["failureLimit"] = json!(-1),
        other => panic!("no such case {other}"),
    }
    strip_nulls(s)
}

/// `null` stands for "field absent" above; the API server wants it really absent.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

async fn create(ns: &TestNamespace, spec: Value) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::erase::<RolloutGate>(&()),
    );
    let created = api.create(&PostParams::default(), &gate(spec)).await;
    if created.is_ok() {
        let _ = api.delete("g", &Default::default()).await;
    }
    created.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn admission_accepts_a_sensible_gate_and_explains_rejections() {
    let ns = TestNamespace::new("admission").await;
    create(&ns, valid())
        .await
        .expect("a valid gate is accepted");

    let cases = [
        (
            "both name and selector",
            "set exactly one of rollouts.name or rollouts.selector",
        ),
        ("no source", "every check needs a Prometheus source"),
        ("two rules", "set exactly one pass rule"),
        ("query and ratio", "set exactly one of query or ratio"),
        ("duplicate names", "check names must be unique"),
        ("bad duration", "spec.interval"),
        ("bad operator", "spec.checks[0].threshold.op"),
        ("no checks", "spec.checks"),
        ("empty tolerance", "againstStable needs at least one of"),
        ("negative limit", "spec.failureLimit"),
    ];
    for (what, expected) in cases {
        let err = create(&ns, broken(what)).await.expect_err(what);
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err}"
        );
    }
    ns.cleanup().await;
}
