//! From a revision's pods to the addresses the probe sends to: ready pods with an IP, on the
//! configured port (a container port name is resolved in each pod's own spec).

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Pod;

use super::PortRef;
use crate::evidence::pods::ready;

/// A pod without the port the probe is to send to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pod {pod} has no container port named {port:?}")]
pub struct NoSuchPort {
    pub pod: String,
    pub port: String,
}

pub fn addresses(pods: &[Pod], port: &PortRef) -> Result<Vec<SocketAddr>, NoSuchPort> {
    let mut out = Vec::new();
    for pod in pods.iter().filter(|p| ready(p)) {
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            continue;
        };
        out.push(SocketAddr::new(ip, port_of(pod, port)?));
    }
    Ok(out)
}

fn port_of(pod: &Pod, port: &PortRef) -> Result<u16, NoSuchPort> {
    let name = match port {
        PortRef::Number(n) => return Ok(*n),
        PortRef::Name(name) => name,
    };
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name.as_str()))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| NoSuchPort {
            pod: pod.metadata.name.clone().unwrap_or_else(|| "?".into()),
            port: name.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 4000}]}]},
            "status": {
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn ready_pods_with_an_ip_on_the_named_port() {
        let pods = [
            pod("a", Some("127.10.0.7"), true),
            pod("b", Some("127.10.0.8"), false),
            pod("c", None, true),
        ];
        let got = addresses(&pods, &PortRef::Name("http".into())).expect("resolves");
        assert_eq!(got, vec!["127.10.0.7:4000".parse().expect("addr")]);
        let by_number = addresses(&pods, &PortRef::Number(9000)).expect("resolves");
        assert_eq!(by_number, vec!["127.10.0.7:9000".parse().expect("addr")]);
    }

    #[test]
    fn an_unknown_port_name_is_a_clear_problem() {
        let err = addresses(
            &[pod("a", Some("10.0.0.1"), true)],
            &PortRef::Name("grpc".into()),
        )
        .expect_err("no such port");
        assert_eq!(
            err.to_string(),
            "pod a has no container port named \"grpc\""
        );
    }
}
