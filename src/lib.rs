//! tollgate: evidence-gated promotion and rollback for Argo Rollouts.
#![deny(warnings)]

pub mod actuate;
pub mod controller;
pub mod decision;
pub mod error;
pub mod evidence;
pub mod gate;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod rollout;
pub mod server;
pub mod template;

pub use error::{Error, Result};

#[cfg(test)]
mod examples_test;

/// The `RolloutGate` CustomResourceDefinition as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> Result<String> {
    use kube::CustomResourceExt;
    let crd = gate::RolloutGate::crd();
    serde_saphyr::to_string(&crd).map_err(|e| Error::Yaml(e.to_string()))
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
