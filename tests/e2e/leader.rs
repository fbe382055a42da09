//! Two replicas with leader election, from the binary as it runs: exactly one acts, and when the
//! leader is killed mid-pause the other takes over within the Lease duration, keeps the pause's
//! pass streak, and promotes exactly once.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate::api::Phase;

use crate::support::controller::{Tollgate, metric_sum};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, wait_for};

const LEASE_DURATION: &str = "6s";

async fn replica(namespace: &str, identity: &str) -> Tollgate {
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "tollgate-system",
        "--lease-name",
        namespace,
        "--lease-duration",
        LEASE_DURATION,
        "--instance",
        identity,
    ];
    Tollgate::start_with(namespace, &args).await
}

async fn leading(t: &Tollgate) -> bool {
    metric_sum(&t.metrics().await, "tollgate_leader{") == 1.0
}

/// Two replicas for the scenario's namespace in place of its one, once exactly one leads; and
/// which one that is.
async fn two_replicas(s: &Scenario) -> (Vec<Tollgate>, usize) {
    let ns = s.ns.name.clone();
    let replicas = vec![replica(&ns, "a").await, replica(&ns, "b").await];
    wait_for("exactly one leader", STEP_TIMEOUT, || async {
        let a = leading(&replicas[0]).await;
        let b = leading(&replicas[1]).await;
        if a != b {
            Ok(())
        } else {
            Err(format!("a leads: {a}, b leads: {b}"))
        }
    })
    .await;
    let leader = if leading(&replicas[0]).await { 0 } else { 1 };
    (replicas, leader)
}

async fn wait_leading(standby: &Tollgate) {
    wait_for("the standby to lead", STEP_TIMEOUT, || async {
        if leading(standby).await {
            Ok(())
        } else {
            Err("still standing by".into())
        }
    })
    .await;
}

#[tokio::test]
async fn the_leader_killed_mid_pause_is_replaced_and_the_pause_promoted_once() {
    let mut s = Scenario::without_tollgate("leader").await;
    let (mut replicas, leader) = two_replicas(&s).await;
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(name, checks, json!({"requiredPasses": 5}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let before = s
        .wait_entry("litellm-gate", name, "a pass at step 1", |e| {
            e.step == Some(1) && e.pass_streak >= 1
        })
        .await;
    let idle = &replicas[1 - leader].metrics().await;
    for work in [
        "tollgate_evaluations_total",
        "tollgate_source_request_duration_seconds_count",
    ] {
        assert_eq!(
            metric_sum(idle, work),
            0.0,
            "a standby does nothing: {work}"
        );
    }
    let killed = Instant::now();
    replicas.remove(leader).stop().await;
    wait_leading(&replicas[0]).await;
    let took_over = killed.elapsed();
    s.streak_kept(name, &before).await;
    let first_action = killed.elapsed();
    s.promoted_once_at_each_pause(name).await;
    // Renewed at most 1.5 s before the kill, the Lease is free no sooner than 6 s after that.
    assert!(
        took_over >= Duration::from_millis(4500) && took_over <= Duration::from_secs(12),
        "took over {took_over:?} after the kill; the Lease lasts {LEASE_DURATION}"
    );
    println!(
        "failover: leader killed -> standby leading in {:.1} s, first evaluation in {:.1} s \
         (Lease {LEASE_DURATION})",
        took_over.as_secs_f64(),
        first_action.as_secs_f64()
    );
    s.tollgate = replicas.pop();
    s.finish().await;
}

#[tokio::test]
async fn a_leader_shut_down_hands_the_lease_over_at_once() {
    let mut s = Scenario::without_tollgate("handover").await;
    let (mut replicas, leader) = two_replicas(&s).await;
    let stopped = Instant::now();
    replicas.remove(leader).terminate().await;
    wait_leading(&replicas[0]).await;
    let took_over = stopped.elapsed();
    // The Lease was handed back: no waiting out its 6 s (4.5 s at the least); the standby looks
    // every 1.5 s.
    assert!(
        took_over < Duration::from_secs(4),
        "took over after {took_over:?}"
    );
    println!(
        "handover: leader shut down -> standby leading in {:.1} s",
        took_over.as_secs_f64()
    );
    s.tollgate = replicas.pop();
    s.finish().await;
}

/// Two instances that both believe they lead (no election: each always acts), as when a Lease
/// is forced or a clock lies. Every promote carries the resourceVersion it was decided on, so
/// the second patch of a pause is refused: each pause is promoted once, and no step is skipped
/// (a skipped step would leave one pause unpromoted by tollgate, or need a third patch).
#[tokio::test]
async fn two_leaders_at_once_never_promote_a_pause_twice() {
    let mut s = Scenario::without_tollgate("two-leaders").await;
    let ns = s.ns.name.clone();
    let first = Tollgate::start_with(&ns, &["--instance", "first"]).await;
    let second = Tollgate::start_with(&ns, &["--instance", "second"]).await;
    for t in [&first, &second] {
        assert!(leading(t).await, "without election every instance acts");
    }
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    // One pass suffices, so both decide to promote on the same evidence, at about one time.
    let gate = s.gate(name, checks, json!({"requiredPasses": 1}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.ns.wait_phase(name, "Healthy", |p| *p == Phase::Healthy)
        .await;
    let (mut decided, mut accepted) = (0.0, 0.0);
    for t in [&first, &second] {
        let metrics = t.metrics().await;
        decided += metric_sum(&metrics, r#"tollgate_decisions_total{action="promote""#);
        accepted += metric_sum(&metrics, "tollgate_actuation_duration_seconds_count");
    }
    // One promote accepted per pause, over both instances: the API server's word, not ours.
    assert_eq!(accepted, 2.0, "promotes accepted for two pauses");
    // More promotes were decided than accepted: the two did race, and the guard, not luck,
    // kept it to one a pause.
    assert!(
        decided > accepted,
        "{decided} promotes decided: the two never raced"
    );
    // The loser may take the winner's recorded intent for its own and say so too (what
    // recovers a promote after a crash): the Events name each step, and no other.
    let promoted = s.notes(name, "Promoted").await;
    assert!(
        promoted
            .iter()
            .all(|n| n.contains("step 1") || n.contains("step 3")),
        "{promoted:?}"
    );
    assert!(
        promoted.iter().any(|n| n.contains("step 3")),
        "{promoted:?}"
    );
    println!("two leaders: {decided} promotes decided, {accepted} accepted");
    second.stop().await;
    s.tollgate = Some(first);
    s.finish().await;
}
