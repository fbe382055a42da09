//! Emergency overrides, set on the Rollout rather than the gate: GitOps tools revert edits to
//! specs they own, not annotations they do not. `tollgate.dev/skip: "true"` makes tollgate stand
//! down at the pause (a person decides); `tollgate.dev/hold: "true"` keeps it evaluating and
//! reporting but never acting, as `mode: DryRun` would for this Rollout alone. Who set one is
//! read from the Rollout's `managedFields` and said in the status and the Event.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::ResourceExt;

use crate::api::Rollout;

pub const SKIP: &str = "tollgate.dev/skip";
pub const HOLD: &str = "tollgate.dev/hold";

/// What the Rollout's annotations ask of tollgate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Override {
    /// Stand down: no evaluation, no probe, no action at this pause.
    Skip { by: String },
    /// Evaluate and report, never act.
    Hold { by: String },
}

impl Override {
    /// The overrides `rollout` carries, skip first (it asks for less). Fails closed: any
    /// value but an explicit no (`false`, `0`, `no`, `off`) overrides, so `True` or `yes` never
    /// leaves tollgate acting against what was meant; a value read as yes that is not `true` is
    /// named.
    pub fn of(rollout: &Rollout) -> (Option<Override>, Option<String>) {
        for key in [SKIP, HOLD] {
            let Some(value) = rollout.annotations().get(key) else {
                continue;
            };
            let value = value.trim();
            if matches!(
                value.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            ) {
                continue;
            }
            let by = setter(rollout.managed_fields(), key);
            let found = if key == SKIP {
                Override::Skip { by }
            } else {
                Override::Hold { by }
            };
            let note = (value != "true").then(|| {
                format!(
                    "annotation {key}={value:?} is read as true (only false, 0, no or off are not)"
                )
            });
            return (Some(found), note);
        }
        (None, None)
    }

    /// One line for the status and the Event.
    pub fn says(&self) -> String {
        match self {
            Override::Skip { by } => format!(
                "{SKIP} set by {by}: tollgate stands down at this pause; remove the annotation to gate again"
            ),
            Override::Hold { by } => format!(
                "{HOLD} set by {by}: evaluating and reporting, never acting; remove the annotation to act again"
            ),
        }
    }
}

/// Who last set `key` among the annotations: the manager whose managed fields hold it.
fn setter(fields: &[ManagedFieldsEntry], key: &str) -> String {
    let newest = fields.iter().filter(|e| sets(e, key)).max_by(|a, b| {
        a.time
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.time.as_ref().map(|t| t.0))
    });
    newest
        .and_then(|e| e.manager.clone())
        .unwrap_or_else(|| "an unknown manager".to_string())
}

/// Whether `entry` manages the annotation `key`.
fn sets(entry: &ManagedFieldsEntry, key: &str) -> bool {
    let field = format!("f:{key}");
    entry
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:metadata")?.get("f:annotations")?.get(&field))
        .is_some()
}

/// `rollout`'s `managedFields` cut to the entries that set an override: the only ones tollgate
/// reads, and otherwise most of a cached Rollout's size (every field Argo and a GitOps tool
/// write, listed per manager).
pub fn keep_only_who_overrides(rollout: &mut Rollout) {
    if let Some(fields) = rollout.metadata.managed_fields.as_mut() {
        fields.retain(|e| [SKIP, HOLD].iter().any(|key| sets(e, key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(annotations: serde_json::Value, managed: serde_json::Value) -> Rollout {
        serde_json::from_value(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns", "annotations": annotations,
                "managedFields": managed},
            "spec": {"strategy": {"canary": {"steps": [{"pause": {}}]}}}}),
        )
        .expect("a Rollout")
    }

    fn managed(manager: &str, key: &str, time: &str) -> serde_json::Value {
        json!({"manager": manager, "operation": "Update", "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {format!("f:{key}"): {}}}}})
    }

    #[test]
    fn only_the_entries_that_set_an_override_are_kept_and_still_name_who() {
        let mut r = rollout(
            json!({HOLD: "true"}),
            json!([
                managed("argocd-controller", "app", "2026-12-01T00:00:00Z"),
                managed("rollouts-controller", "status", "2026-12-01T01:00:00Z"),
                managed("kubectl-annotate", HOLD, "2026-12-02T04:00:00Z")
            ]),
        );
        keep_only_who_overrides(&mut r);
        let kept: Vec<_> = r
            .managed_fields()
            .iter()
            .filter_map(|e| e.manager.clone())
            .collect();
        assert_eq!(kept, ["kubectl-annotate"]);
        assert_eq!(
            Override::of(&r).0,
            Some(Override::Hold {
                by: "kubectl-annotate".into()
            })
        );
    }

    #[test]
    fn an_override_names_who_set_it() {
        let r = rollout(
            json!({HOLD: "true"}),
            json!([
                managed("argocd-controller", "app", "2026-12-01T00:00:00Z"),
                managed("kubectl-annotate", HOLD, "2026-12-02T04:00:00Z")
            ]),
        );
        let (found, problem) = Override::of(&r);
        assert_eq!(
            found,
            Some(Override::Hold {
                by: "kubectl-annotate".into()
            })
        );
        assert_eq!(problem, None);
        assert!(
            found
                .expect("hold")
                .says()
                .starts_with("tollgate.dev/hold set by kubectl-annotate")
        );
    }

    #[test]
    fn skip_wins_over_hold_and_any_value_but_an_explicit_no_overrides() {
        let both = rollout(json!({SKIP: "true", HOLD: "true"}), json!([]));
        let unknown = "an unknown manager".to_string();
        assert_eq!(
            Override::of(&both).0,
            Some(Override::Skip {
                by: unknown.clone()
            })
        );
        let yes = rollout(json!({HOLD: "True"}), json!([]));
        let (found, note) = Override::of(&yes);
        assert_eq!(found, Some(Override::Hold { by: unknown }), "fails closed");
        assert!(note.expect("named").contains("read as true"));
        for no in ["false", "0", "no", "OFF"] {
            let r = rollout(json!({SKIP: no, HOLD: no}), json!([]));
            assert_eq!(Override::of(&r), (None, None), "{no}");
        }
        assert_eq!(Override::of(&rollout(json!({}), json!([]))), (None, None));
    }
}
