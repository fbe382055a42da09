//! tollgate: evidence-gated promotion and rollback for Argo Rollouts.
#![deny(warnings)]

pub mod api;
pub mod check;
pub mod compile;
pub mod controller;
pub mod decision;
pub mod error;
pub mod evidence;
pub mod explain;
pub mod metrics;
pub mod notify;
pub mod promql;
pub mod server;

pub use error::{Error, Result};

#[cfg(test)]
mod examples_test;

/// The `RolloutGate` CustomResourceDefinition as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> Result<String> {
    use kube::CustomResourceExt;
    let crd = api::RolloutGate::crd();
    Ok(serde_saphyr::to_string(&crd)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_crd_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/rolloutgate.yaml");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        let generated = super::crd_yaml().expect("CRD renders");
        assert!(
            checked_in == generated,
            "crds/rolloutgate.yaml is stale: run `cargo run -- crd > crds/rolloutgate.yaml`"
        );
    }
}
