//! What every evaluation's sources share: the Kubernetes client (Secrets, pods), one HTTP client
//! per Prometheus address and credentials, one for webhooks, and a bound on the requests in
//! flight to each address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::SourceError;
use super::credentials::{self, Credentials};
use super::http::{self, ClientError, ClientOptions};
use super::prometheus::{self, Endpoint};

/// Requests one source address may have in flight at once, across every gate and Rollout: a
/// source that slows down queues its own requests and nobody else's.
const TURNS_PER_SOURCE: usize = 16;
/// A client or a queue unused this long is dropped (a rotated Secret leaves its old client
/// behind; a gate that went away, its address).
const UNUSED: Duration = Duration::from_secs(600);

pub struct Sources {
    kube: kube::Client,
    webhooks: reqwest::Client,
    prometheus: Mutex<Cache<(String, Credentials), prometheus::Client>>,
    turns: Mutex<Cache<String, Arc<Semaphore>>>,
}

impl Sources {
    pub fn new(kube: kube::Client) -> Result<Sources, ClientError> {
        Ok(Sources {
            kube,
            webhooks: http::client(ClientOptions::default())?,
            prometheus: Mutex::default(),
            turns: Mutex::default(),
        })
    }

    pub fn kube(&self) -> &kube::Client {
        &self.kube
    }

    /// The client for webhook sources (connections pooled across evaluations).
    pub fn webhooks(&self) -> &reqwest::Client {
        &self.webhooks
    }

    /// Waits for a turn to send to `address` (held until the permit is dropped).
    pub async fn turn(&self, address: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            turns
                .get_or_insert(address.to_string(), || {
                    Arc::new(Semaphore::new(TURNS_PER_SOURCE))
                })
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }

    /// The client for a Prometheus endpoint, with its credentials read from their Secrets now
    /// (so a rotated Secret takes effect at the next evaluation).
    pub async fn prometheus(
        &self,
        namespace: &str,
        endpoint: &Endpoint,
    ) -> Result<prometheus::Client, SourceError> {
        let creds = credentials::read(&self.kube, namespace, &endpoint.auth).await?;
        let key = (endpoint.address.clone(), creds);
        let mut cache = self
            .prometheus
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let client = prometheus::Client::new(&endpoint.address, &key.1)?;
        Ok(cache.get_or_insert(key, || client).clone())
    }
}

/// A map whose entries go once unused for [`UNUSED`].
struct Cache<K, V> {
    entries: HashMap<K, (V, Instant)>,
}

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache {
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + std::hash::Hash, V> Cache<K, V> {
    fn get(&mut self, key: &K) -> Option<&V> {
        let (value, used) = self.entries.get_mut(key)?;
        *used = Instant::now();
        Some(value)
    }

    fn get_or_insert(&mut self, key: K, make: impl FnOnce() -> V) -> &V {
        self.get_or_insert_at(key, Instant::now(), make)
    }

    fn get_or_insert_at(&mut self, key: K, now: Instant, make: impl FnOnce() -> V) -> &V {
        if !self.entries.contains_key(&key) {
            self.entries
                .retain(|_, (_, used)| now.duration_since(*used) < UNUSED);
        }
        let (value, used) = self.entries.entry(key).or_insert_with(|| (make(), now));
        *used = now;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_unused_for_long_go_when_another_comes() {
        let mut cache: Cache<&str, u32> = Cache::default();
        let start = Instant::now();
        cache.get_or_insert_at("old", start, || 1);
        cache.get_or_insert_at("recent", start + UNUSED / 2, || 2);
        let later = start + UNUSED + Duration::from_secs(1);
        cache.get_or_insert_at("new", later, || 3);
        assert!(
            !cache.entries.contains_key("old"),
            "unused past the limit: dropped"
        );
        assert_eq!(cache.get(&"recent"), Some(&2), "used within it: kept");
        assert_eq!(
            *cache.get_or_insert_at("new", later, || 4),
            3,
            "a live entry is not rebuilt"
        );
    }
}
