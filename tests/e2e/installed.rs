//! tollgate installed from its own manifests — the Helm chart and the Kustomize base — with its
//! pods run as a kubelet would run them (see `support::podrunner`): two replicas and one leader,
//! a leader's pod deleted mid-pause, a namespaced install held to its namespaces by the API
//! server itself. A default install watches every namespace, so these run alone, after the
//! rest of the suite (`scripts/test`).

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tollgate::api::RolloutGate;

use crate::support::install::{Installed, leads, repo, tool};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, wait_for};

const NAME: &str = "litellm";

/// A canary gated at both pauses, its revision bumped; the gate needs `passes` in a row.
async fn gated_canary(prefix: &str, passes: u32) -> Scenario {
    let mut s = Scenario::without_tollgate(prefix).await;
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(NAME, checks, json!({"requiredPasses": passes}));
    s.canary_with_gate(NAME, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    s
}

/// Who reported each of tollgate's Events about the canary.
async fn reporters(s: &Scenario) -> Vec<String> {
    let events: Api<Event> = s.ns.api();
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    list.items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("tollgate"))
        .filter_map(|e| e.reporting_instance)
        .collect()
}

/// Both pods ready (a standby is healthy), and never more than one leading at a look.
async fn ready_and_one_leader(install: &Installed) {
    let pods = install.pods_running();
    assert_eq!(pods.len(), 2, "both pods run: {pods:?}");
    let mut leading = 0;
    for pod in &pods {
        let ready = pod.metrics_url.replace("/metrics", "/readyz");
        let status = reqwest::get(&ready).await.map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "{} is ready", pod.name);
        leading += usize::from(leads(pod).await);
    }
    assert!(leading <= 1, "{leading} of {pods:?} lead at once");
}

#[tokio::test]
async fn installed_with_helm_defaults_two_pods_one_leader_gate_a_canary() {
    let install = Installed::helm("tg-helm", &[]).await;
    install.pods(2).await;
    let leader = install.leader().await;
    let s = gated_canary("helm-gated", 2).await;
    {
        let promoted = s.promoted_once_at_each_pause(NAME);
        tokio::pin!(promoted);
        loop {
            tokio::select! {
                () = &mut promoted => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                    ready_and_one_leader(&install).await;
                }
            }
        }
    }
    let by = reporters(&s).await;
    assert!(
        !by.is_empty() && by.iter().all(|i| *i == leader.name),
        "every Event from the leader's pod {}: {by:?}",
        leader.name
    );
    viewers_read_gates_and_only_tollgate_writes_their_status(&s.ns.name).await;
    s.finish().await;
    install.uninstall().await;
}

/// The API server's own answer to `kubectl auth can-i VERB RESOURCE` for `user` in `namespace`;
/// `RESOURCE/SUBRESOURCE` asks of the subresource (kubectl would read it as an object's name).
async fn can_i(user: &str, namespace: &str, verb: &str, resource: &str) -> String {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let out = tokio::process::Command::new("kubectl")
        .args([
            "auth", "can-i", verb, resource, "-n", namespace, "--as", user,
        ])
        .arg(format!("--subresource={subresource}"))
        .output()
        .await
        .expect("kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The chart aggregates gates into Kubernetes' `view` and `edit` roles: a viewer may read them
/// (what `kubectl tollgate explain|list` needs) and write nothing; an editor may write gates,
/// never their status.
async fn viewers_read_gates_and_only_tollgate_writes_their_status(namespace: &str) {
    for (user, role) in [("alice", "view"), ("bob", "edit")] {
        tool(
            "kubectl",
            &[
                "create",
                "rolebinding",
                user,
                "-n",
                namespace,
                "--clusterrole",
                role,
                "--user",
                user,
            ],
        )
        .await;
    }
    // The aggregation controller fills the roles in a moment after the chart's roles appear.
    wait_for("gates aggregated into view", STEP_TIMEOUT, || async {
        match can_i("alice", namespace, "list", "rolloutgates.tollgate.dev")
            .await
            .as_str()
        {
            "yes" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let answers = [
        ("alice", "watch", "rolloutgates.tollgate.dev", "yes"),
        ("alice", "create", "rolloutgates.tollgate.dev", "no"),
        ("bob", "patch", "rolloutgates.tollgate.dev", "yes"),
        ("bob", "patch", "rolloutgates.tollgate.dev/status", "no"),
        ("alice", "patch", "rolloutgates.tollgate.dev/status", "no"),
    ];
    for (user, verb, resource, expected) in answers {
        let said = can_i(user, namespace, verb, resource).await;
        assert_eq!(said, expected, "can {user} {verb} {resource}?");
    }
}

#[tokio::test]
async fn installed_leader_pod_deleted_mid_pause_the_other_keeps_the_streak_and_promotes_once() {
    let install = Installed::helm("tg-failover", &[]).await;
    install.pods(2).await;
    let leader = install.leader().await;
    let s = gated_canary("helm-failover", 4).await;
    let before = s
        .wait_entry(&format!("{NAME}-gate"), NAME, "a pass at step 1", |e| {
            e.step == Some(1) && e.pass_streak >= 1
        })
        .await;
    let deleted = Instant::now();
    install.delete_pod(&leader.name).await;
    let successor = wait_for("another pod to lead", STEP_TIMEOUT, || async {
        for pod in install.pods_running() {
            if pod.name != leader.name && leads(&pod).await {
                return Ok(pod);
            }
        }
        Err("no other pod leads yet".to_string())
    })
    .await;
    let took_over = deleted.elapsed();
    s.streak_kept(NAME, &before).await;
    s.promoted_once_at_each_pause(NAME).await;
    // The Deployment replaced the deleted pod, and the new one stands by.
    install.pods(2).await;
    install.leader().await;
    let by = reporters(&s).await;
    assert!(
        by.contains(&successor.name),
        "the successor {} acted: {by:?}",
        successor.name
    );
    println!(
        "failover (helm install, pod deleted): {} -> {} leading in {:.1} s",
        leader.name,
        successor.name,
        took_over.as_secs_f64()
    );
    s.finish().await;
    install.uninstall().await;
}

/// The Secret `creds` in `namespace`, read with the token of a pod of `install`.
async fn read_secret_as_pod(install: &Installed, namespace: &str) -> Result<Secret, kube::Error> {
    let pod = &install.pods_running()[0];
    let token =
        std::fs::read_to_string(repo().join(format!("target/e2e-logs/pod-{}/token", pod.name)))
            .expect("the pod's token");
    let mut config = kube::Config::infer().await.expect("the stack's kubeconfig");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.trim().to_string().into()),
        ..Default::default()
    };
    let client = kube::Client::try_from(config).expect("a client with the pod's token");
    Api::<Secret>::namespaced(client, namespace)
        .get("creds")
        .await
}

async fn create_secret(namespace: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"token": "not-for-tollgate"}}))
    .expect("a Secret");
    let api: Api<Secret> = Api::namespaced(crate::support::client().await, namespace);
    api.create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
}

#[tokio::test]
async fn installed_for_one_namespace_gates_there_and_is_refused_everywhere_else() {
    let watched = gated_canary("helm-watched", 2).await;
    let other = gated_canary("helm-unwatched", 2).await;
    let scope = format!("watchNamespaces[0]={}", watched.ns.name);
    let install = Installed::helm("tg-scoped", &[&scope, "replicaCount=1"]).await;
    install.pods(1).await;
    install.leader().await;
    watched.promoted_once_at_each_pause(NAME).await;

    // The other namespace's gate was never touched: no status, no Event.
    let gates: Api<RolloutGate> = other.ns.api();
    let gate = gates.get(&format!("{NAME}-gate")).await.expect("the gate");
    assert!(gate.status.is_none(), "untouched: {:?}", gate.status);
    assert!(reporters(&other).await.is_empty());

    // Least privilege, in the API server's own words.
    create_secret(&watched.ns.name).await;
    create_secret(&other.ns.name).await;
    read_secret_as_pod(&install, &watched.ns.name)
        .await
        .expect("a Secret in a watched namespace is readable");
    match read_secret_as_pod(&install, &other.ns.name).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("expected 403 Forbidden outside the watched namespace: {other:?}"),
    }
    watched.finish().await;
    other.finish().await;
    install.uninstall().await;
}

#[tokio::test]
async fn installed_from_the_kustomize_base_gates_a_canary() {
    let base = repo().join("deploy/kustomize/base");
    let install =
        Installed::kustomize(&base, "tollgate-system", "app.kubernetes.io/name=tollgate").await;
    install.pods(2).await;
    install.leader().await;
    let s = gated_canary("kustomize-gated", 2).await;
    s.promoted_once_at_each_pause(NAME).await;
    s.finish().await;
    // The base's Deployment goes; its RBAC is what the rest of the suite runs with, and stays.
    tool(
        "kubectl",
        &[
            "delete",
            "deployment",
            "tollgate",
            "-n",
            "tollgate-system",
            "--wait=false",
        ],
    )
    .await;
    install.uninstall().await;
}
