//! The RolloutGate CRD as the real API server enforces it: a sensible gate is accepted, and
//! nonsense is rejected at admission with a message a person understands.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use tollgate::api::RolloutGate;

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
        "empty tolerance" => {
            check["threshold"] = Value::Null;
            check["againstStable"] = json!({});
        }
        "negative limit" => s["failureLimit"] = json!(-1),
        "probe check without spec.probe" => {
            check["ratio"] = Value::Null;
            check["probe"] = json!({"metric": "errorRatio"});
        }
        "query and probe" => check["probe"] = json!({"metric": "errorRatio"}),
        "unknown probe metric" => {
            check["ratio"] = Value::Null;
            check["probe"] = json!({"metric": "p42"});
            s["probe"] = probe();
        }
        "header with value and secret" => {
            s["probe"] = probe();
            s["probe"]["requests"][0]["headers"] = json!([{"name": "Authorization", "value": "x", "secret": {"name": "s", "key": "k"}}]);
        }
        "bad success code" => {
            s["probe"] = probe();
            s["probe"]["requests"][0]["successCodes"] = json!(["20x"]);
        }
        "pod health without a rule" => {
            check["ratio"] = Value::Null;
            check["threshold"] = Value::Null;
            check["podHealth"] = json!({"signal": "restarts"});
        }
        "no checks and no podHealth" => s["checks"] = json!([]),
        "minSamples without a query" => check["minSamples"] = json!({"count": 10}),
        "minSamples on pod health" => {
            check["ratio"] = Value::Null;
            check["podHealth"] = json!({"signal": "restarts"});
            check["minSamples"] = json!({"count": 10});
        }
        "sequential and threshold" => check["sequential"] = json!({}),
        "sequential on a query without latency" => {
            check["ratio"] = Value::Null;
            check["threshold"] = Value::Null;
            check["query"] = json!("sum by (le) (increase(x_bucket[5m]))");
            check["sequential"] = json!({});
        }
        "MannWhitney on a ratio" => {
            check["threshold"] = Value::Null;
            check["sequential"] = json!({"method": "MannWhitney"});
        }
        "sequential with minSamples" => {
            check["threshold"] = Value::Null;
            check["sequential"] = json!({});
            check["minSamples"] = json!({"count": 10, "query": "x"});
        }
        "sequential with noData Skip" => {
            check["threshold"] = Value::Null;
            check["sequential"] = json!({});
            check["noData"] = json!("Skip");
        }
        "alpha out of range" => {
            check["threshold"] = Value::Null;
            check["sequential"] = json!({"alpha": 0.7});
        }
        "horizon without MannWhitney" => {
            check["threshold"] = Value::Null;
            check["sequential"] = json!({"horizon": 50});
        }
        "quantile out of range" => {
            check["ratio"] = Value::Null;
            check["threshold"] = Value::Null;
            check["query"] = json!("sum by (le) (increase(x_bucket[5m]))");
            check["sequential"] = json!({"latency": {"quantile": 1.5}});
        }
        "a name the guard uses" => {
            check["name"] = json!("pod-restarts");
            s["podHealth"] = json!({});
        }
        "notify target with two kinds" => {
            s["notify"] = notify(json!([{"name": "a", "slack": hook("a"), "teams": hook("a")}]));
        }
        "notify target with no kind" => s["notify"] = notify(json!([{"name": "a"}])),
        "duplicate notify targets" => {
            s["notify"] = notify(
                json!([{"name": "a", "slack": hook("a")}, {"name": "a", "teams": hook("b")}]),
            );
        }
        "too many notify targets" => {
            let many: Vec<Value> = (0..9)
                .map(|i| json!({"name": format!("t{i}"), "slack": hook("a")}))
                .collect();
            s["notify"] = notify(json!(many));
        }
        "no notify targets" => s["notify"] = notify(json!([])),
        "a reason notify does not know" => {
            s["notify"] = notify(json!([{"name": "a", "slack": hook("a")}]));
            s["notify"]["on"] = json!(["Aborted", "NotifyFailed"]);
        }
        "a notify reason twice" => {
            s["notify"] = notify(json!([{"name": "a", "slack": hook("a")}]));
            s["notify"]["on"] = json!(["Aborted", "Aborted"]);
        }
        "a notify link that is no URL" => {
            s["notify"] = notify(json!([{"name": "a", "slack": hook("a")}]));
            s["notify"]["link"] = json!("argocd/{{ rollout }}");
        }
        other => panic!("no such case {other}"),
    }
    strip_nulls(s)
}

fn notify(targets: Value) -> Value {
    json!({"targets": targets})
}

/// A notification URL from the Secret `hooks`.
fn hook(key: &str) -> Value {
    json!({"url": {"name": "hooks", "key": key}})
}

fn probe() -> Value {
    json!({"port": "http", "requests": [{"name": "chat", "path": "/v1/chat/completions"}]})
}

/// Gates for apps without metrics: the probe, the pod-health guard alone, a webhook verdict.
fn valid_without_metrics() -> Vec<Value> {
    vec![
        json!({"rollouts": {"name": "a"}, "probe": probe(), "podHealth": {},
            "checks": [{"name": "errors", "probe": {"metric": "errorRatio"},
                "threshold": {"op": "<=", "value": 0.01}, "minSamples": {"count": 50}}]}),
        json!({"rollouts": {"name": "a"}, "podHealth": {"maxRestarts": 2, "maxNotReady": "5m"}}),
        json!({"rollouts": {"name": "a"}, "checks": [
            {"name": "judge", "webhook": {"url": "https://judge.example/gate", "timeout": "3s",
                "headers": [{"name": "Authorization", "secret": {"name": "judge", "key": "token"}}]}}]}),
        json!({"rollouts": {"name": "a"}, "podHealth": {}, "notify": {
            "targets": [{"name": "ops", "slack": hook("slack")}, {"name": "sre", "teams": hook("teams")},
                {"name": "audit", "webhook": {"url": hook("audit")["url"],
                    "headers": [{"name": "X-Token", "secret": {"name": "hooks", "key": "token"}}]}}],
            "on": ["Aborted", "Holding", "ConflictingGates"],
            "link": "https://argocd.example/applications/{{ namespace }}/{{ rollout }}"}}),
        json!({"rollouts": {"name": "a"}, "probe": probe(), "checks": [
            {"name": "errors", "probe": {"metric": "errorRatio"}, "sequential": {}},
            {"name": "p99", "probe": {"metric": "latencyP99"},
                "sequential": {"alpha": 0.05, "margin": 0.3, "latency": {"quantile": 0.999}}},
            {"name": "kayenta", "probe": {"metric": "latencyP50"},
                "sequential": {"latency": {}, "method": "MannWhitney", "horizon": 200}}]}),
        json!({"rollouts": {"name": "a"}, "prometheus": {"address": "http://prometheus:9090"},
            "checks": [
            {"name": "errors", "sequential": {"alpha": 0.01, "margin": 0.2}, "noData": "Hold",
                "ratio": {"numerator": "sum(increase(errors_total[{{ pauseWindow }}]))",
                    "denominator": "sum(increase(requests_total[{{ pauseWindow }}]))"}},
            {"name": "latency", "sequential": {"latency": {}},
                "query": "sum by (le) (increase(x_bucket[{{ pauseWindow }}]))"}]}),
        json!({"rollouts": {"name": "a"}, "probe": {"port": 8080, "scheme": "HTTPS",
            "requests": [{"name": "health", "path": "/healthz", "successCodes": ["200", "4xx"]}]},
            "checks": [{"name": "p95", "probe": {"metric": "latencyP95"},
                "againstStable": {"maxRatio": 1.5}}]}),
    ]
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
    for spec in valid_without_metrics() {
        create(&ns, spec.clone())
            .await
            .unwrap_or_else(|e| panic!("{spec} is valid: {e}"));
    }

    let cases = [
        (
            "both name and selector",
            "set exactly one of rollouts.name or rollouts.selector",
        ),
        (
            "no source",
            "every query or ratio check needs a Prometheus source",
        ),
        ("two rules", "set exactly one pass rule"),
        ("query and ratio", "set exactly one source"),
        ("duplicate names", "check names must be unique"),
        ("bad duration", "spec.interval"),
        ("bad operator", "spec.checks[0].threshold.op"),
        ("empty tolerance", "againstStable needs at least one of"),
        ("negative limit", "spec.failureLimit"),
        (
            "probe check without spec.probe",
            "a probe check needs spec.probe",
        ),
        ("query and probe", "set exactly one source"),
        ("unknown probe metric", "spec.checks[0].probe.metric"),
        (
            "header with value and secret",
            "set exactly one of value or secret",
        ),
        ("bad success code", "successCodes[0]"),
        ("pod health without a rule", "set exactly one pass rule"),
        ("no checks and no podHealth", "a gate needs evidence"),
        (
            "minSamples without a query",
            "minSamples.query is required for query and ratio checks",
        ),
        (
            "minSamples on pod health",
            "minSamples does not apply to podHealth checks",
        ),
        ("sequential and threshold", "set exactly one pass rule"),
        (
            "sequential on a query without latency",
            "sequential compares error counts on ratio checks",
        ),
        (
            "MannWhitney on a ratio",
            "method MannWhitney compares the probe's raw latencies",
        ),
        (
            "sequential with minSamples",
            "minSamples does not apply to sequential checks",
        ),
        (
            "sequential with noData Skip",
            "noData does not apply to sequential checks",
        ),
        ("alpha out of range", "alpha is the false-abort probability"),
        (
            "horizon without MannWhitney",
            "horizon applies to method MannWhitney only",
        ),
        (
            "quantile out of range",
            "quantile must be above 0 and below 1",
        ),
        (
            "a name the guard uses",
            "podHealth adds the checks pod-crashloop",
        ),
        (
            "notify target with two kinds",
            "set exactly one of slack, teams or webhook on a notify target",
        ),
        (
            "notify target with no kind",
            "set exactly one of slack, teams or webhook on a notify target",
        ),
        (
            "duplicate notify targets",
            "notify target names must be unique",
        ),
        ("too many notify targets", "spec.notify.targets"),
        ("no notify targets", "spec.notify.targets"),
        ("a reason notify does not know", "spec.notify.on[1]"),
        ("a notify reason twice", "notify.on lists each reason once"),
        ("a notify link that is no URL", "spec.notify.link"),
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
