//! End-to-end tests against the local stack (`scripts/cluster up`): a real kube-apiserver, the real
//! Argo Rollouts controller, KWOK nodes and a real Prometheus. Run through `scripts/test`.

mod support;

// `tollgate logmetrics`, the access-log sidecar, in front of real Rollouts.
mod logmetrics;

mod admission;
mod check;
mod control;
mod demo;
mod faults;
mod gating;
mod hubble;
mod installed;
mod leader;
mod notify;
mod observability;
mod podhealth;
mod probes;
mod races;
mod sequential;
mod sources;
mod stack;
mod stackfaults;
mod story;
mod victoria;
mod webhook;
