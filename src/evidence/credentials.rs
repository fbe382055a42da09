//! Credentials a source sends, named in a gate by Secret and key, and read from Kubernetes
//! Secrets in the gate's namespace when a source is asked. Values are never logged; errors name
//! the Secret and key, never their content.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// One key of a Secret in the gate's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKeyRef {
    pub secret: String,
    pub key: String,
}

/// How a source authenticates, and whom it trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Auth {
    pub authorization: Option<Authorization>,
    /// A PEM CA bundle to trust besides the system's.
    pub ca: Option<SecretKeyRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Authorization {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretKeyRef),
    /// Basic auth from a Secret's `username` and `password` keys.
    Basic { secret: String },
}

/// A header a source sends, with a literal value or one read from a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    Literal(String),
    Secret(SecretKeyRef),
}

/// Why a credential could not be read. Names the Secret and key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading Secret {secret}: {}", short(.source))]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {0} not found")]
    NotFound(String),
    #[error("Secret {secret} has no key {key}")]
    NoKey { secret: String, key: String },
    #[error("Secret {secret}/{key} is not UTF-8")]
    NotUtf8 { secret: String, key: String },
}

/// Credentials and trust for one source, read from their Secrets.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// A complete `Authorization` header value (`Bearer …` or `Basic …`).
    pub authorization: Option<String>,
    /// PEM bundle of extra CAs.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.debug_struct("Credentials")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .finish()
    }
}

pub async fn read(
    client: &Client,
    namespace: &str,
    auth: &Auth,
) -> Result<Credentials, SecretError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut creds = Credentials::default();
    match &auth.authorization {
        None => {}
        Some(Authorization::Bearer(token)) => {
            let token = text(&secrets, token).await?;
            creds.authorization = Some(format!("Bearer {token}"));
        }
        Some(Authorization::Basic { secret }) => {
            let pick = |key: &str| SecretKeyRef {
                secret: secret.clone(),
                key: key.to_string(),
            };
            let mut pair = bytes(&secrets, &pick("username")).await?;
            pair.push(b':');
            pair.extend(bytes(&secrets, &pick("password")).await?);
            creds.authorization = Some(format!("Basic {}", base64(&pair)));
        }
    }
    if let Some(ca) = &auth.ca {
        creds.ca_pem = Some(bytes(&secrets, ca).await?);
    }
    Ok(creds)
}

/// Header names and values, with values from Secrets read now. The values are secrets: callers
/// mark them sensitive and never log them.
pub async fn headers(
    client: &Client,
    namespace: &str,
    wanted: &[Header],
) -> Result<Vec<(String, String)>, SecretError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::with_capacity(wanted.len());
    for h in wanted {
        let value = match &h.value {
            HeaderValue::Literal(v) => v.clone(),
            HeaderValue::Secret(s) => text(&secrets, s).await?,
        };
        out.push((h.name.clone(), value));
    }
    Ok(out)
}

/// One key's value as text, read now (a notification target's URL). A secret: never logged.
pub async fn value(
    client: &Client,
    namespace: &str,
    wanted: &SecretKeyRef,
) -> Result<String, SecretError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    text(&secrets, wanted).await
}

/// A key's value as text, trimmed (a trailing newline from `kubectl create secret` is no part
/// of a token).
async fn text(secrets: &Api<Secret>, wanted: &SecretKeyRef) -> Result<String, SecretError> {
    let value = bytes(secrets, wanted).await?;
    let text = String::from_utf8(value).map_err(|_| SecretError::NotUtf8 {
        secret: wanted.secret.clone(),
        key: wanted.key.clone(),
    })?;
    Ok(text.trim().to_string())
}

async fn bytes(secrets: &Api<Secret>, wanted: &SecretKeyRef) -> Result<Vec<u8>, SecretError> {
    let secret = secrets
        .get_opt(&wanted.secret)
        .await
        .map_err(|source| SecretError::Read {
            secret: wanted.secret.clone(),
            source,
        })?
        .ok_or_else(|| SecretError::NotFound(wanted.secret.clone()))?;
    secret
        .data
        .and_then(|mut d| d.remove(&wanted.key))
        .map(|b| b.0)
        .ok_or_else(|| SecretError::NoKey {
            secret: wanted.secret.clone(),
            key: wanted.key.clone(),
        })
}

/// A Kubernetes API error in one line: the server's message and code.
pub fn short(e: &kube::Error) -> String {
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
