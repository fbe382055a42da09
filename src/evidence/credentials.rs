//! Reads a source's credentials from Kubernetes Secrets in the gate's namespace. Values are
//! never logged; errors name the Secret and key, never their content.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::prometheus::Credentials;
use crate::gate::{Header, PrometheusAuth, SecretKey};

pub async fn read(
    client: &Client,
    namespace: &str,
    auth: Option<&PrometheusAuth>,
) -> Result<Credentials, String> {
    let Some(auth) = auth else {
        return Ok(Credentials::default());
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut creds = Credentials::default();
    if let Some(token) = &auth.bearer_token {
        let value = key(&secrets, token).await?;
        let token = String::from_utf8(value)
            .map_err(|_| format!("Secret {}/{} is not UTF-8", token.name, token.key))?;
        creds.authorization = Some(format!("Bearer {}", token.trim()));
    }
    if let Some(basic) = &auth.basic_auth {
        let pick = |k: &str| SecretKey {
            name: basic.name.clone(),
            key: k.to_string(),
        };
        let user = key(&secrets, &pick("username")).await?;
        let password = key(&secrets, &pick("password")).await?;
        let mut pair = user;
        pair.push(b':');
        pair.extend(password);
        creds.authorization = Some(format!("Basic {}", base64(&pair)));
    }
    if let Some(ca) = &auth.ca {
        creds.ca_pem = Some(key(&secrets, ca).await?);
    }
    Ok(creds)
}

/// Header names and values, with values from Secrets read now. The values are secrets: callers
/// mark them sensitive and never log them.
pub async fn headers(
    client: &Client,
    namespace: &str,
    wanted: &[Header],
) -> Result<Vec<(String, String)>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::with_capacity(wanted.len());
    for h in wanted {
        let value = match (&h.value, &h.secret) {
            (Some(v), _) => v.clone(),
            (None, Some(s)) => String::from_utf8(key(&secrets, s).await?)
                .map_err(|_| format!("Secret {}/{} is not UTF-8", s.name, s.key))?
                .trim()
                .to_string(),
            (None, None) => return Err(format!("header {} has no value", h.name)),
        };
        out.push((h.name.clone(), value));
    }
    Ok(out)
}

async fn key(secrets: &Api<Secret>, wanted: &SecretKey) -> Result<Vec<u8>, String> {
    let secret = secrets
        .get_opt(&wanted.name)
        .await
        .map_err(|e| format!("reading Secret {}: {}", wanted.name, short(&e)))?
        .ok_or_else(|| format!("Secret {} not found", wanted.name))?;
    secret
        .data
        .and_then(|mut d| d.remove(&wanted.key))
        .map(|b| b.0)
        .ok_or_else(|| format!("Secret {} has no key {}", wanted.name, wanted.key))
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pa55", "dXNlcjpwYTU1"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
    }
}
