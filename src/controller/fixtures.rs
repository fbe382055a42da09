//! A fake API server for controller tests: it holds objects, answers GET, merge PATCH (with the
//! `metadata.resourceVersion` precondition the real one enforces) and POST, and records every
//! call. Reconciles run against it in milliseconds; the real stack is for `tests/e2e`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::context::Context;
use super::tracker::PauseKey;
use crate::api::{Rollout, RolloutGate};

/// One call the controller made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Objects by path (without `/status`).
    objects: HashMap<String, Value>,
    calls: Vec<Call>,
    version: u64,
    /// Answer nothing, ever (a partitioned API server).
    silent: bool,
}

impl ApiServer {
    /// A client that talks to this server.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Holds `object` (a Rollout or a RolloutGate, as JSON) at its path.
    pub fn put(&self, object: &impl serde::Serialize) {
        let object = serde_json::to_value(object).unwrap_or_else(|e| panic!("test object: {e}"));
        let path = path_of(&object);
        self.state().objects.insert(path, object);
    }

    /// Holds `object` at `path` (a list, say).
    pub fn put_at(&self, path: &str, object: Value) {
        self.state().objects.insert(path.to_string(), object);
    }

    /// The object at `path`, as it is now.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    /// From now on, answer nothing (or again, with `false`).
    pub fn silence(&self, silent: bool) {
        self.state().silent = silent;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The bodies of the PATCHes to paths ending with `suffix`.
    pub fn patches(&self, suffix: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == Method::PATCH && c.path.ends_with(suffix))
            .map(|c| c.body)
            .collect()
    }

    /// Each Event published, as (type, reason, note, the object it is about).
    pub fn events(&self) -> Vec<(String, String, String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == Method::POST && c.path.ends_with("/events"))
            .map(|c| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&c.body["type"]),
                    text(&c.body["reason"]),
                    text(&c.body["note"]),
                    text(&c.body["regarding"]["kind"]),
                )
            })
            .collect()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let silent = self.state().silent;
        if silent {
            std::future::pending::<()>().await;
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status(StatusCode::BAD_REQUEST, "unreadable body"),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut state = self.state();
        state.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let key = path.trim_end_matches("/status").to_string();
        match method {
            Method::GET => match state.objects.get(&key) {
                Some(o) => reply(StatusCode::OK, o),
                None => status(StatusCode::NOT_FOUND, "not found"),
            },
            Method::POST if path.ends_with("/events") => reply(StatusCode::CREATED, &body),
            Method::POST => state.create(&key, body),
            Method::PUT => state.replace(&key, body),
            Method::PATCH => state.patch(&key, &body),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "not served"),
        }
    }
}

impl State {
    /// Holds a new object under its collection's path, as the API server would.
    fn create(&mut self, collection: &str, mut object: Value) -> Response<Body> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = format!("{collection}/{name}");
        if self.objects.contains_key(&key) {
            return status(StatusCode::CONFLICT, "already exists");
        }
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.objects.insert(key, object.clone());
        reply(StatusCode::CREATED, &object)
    }

    /// Replaces an object whose resourceVersion is the one the writer read.
    fn replace(&mut self, key: &str, mut object: Value) -> Response<Body> {
        let Some(held) = self.objects.get(key) else {
            return status(StatusCode::NOT_FOUND, "not found");
        };
        if object["metadata"]["resourceVersion"] != held["metadata"]["resourceVersion"] {
            return status(StatusCode::CONFLICT, "the object has been modified");
        }
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.objects.insert(key.to_string(), object.clone());
        reply(StatusCode::OK, &object)
    }

    fn patch(&mut self, key: &str, patch: &Value) -> Response<Body> {
        self.version += 1;
        let version = self.version.to_string();
        let Some(object) = self.objects.get_mut(key) else {
            return status(StatusCode::NOT_FOUND, "not found");
        };
        let wanted = &patch["metadata"]["resourceVersion"];
        if !wanted.is_null() && *wanted != object["metadata"]["resourceVersion"] {
            return status(StatusCode::CONFLICT, "the object has been modified");
        }
        merge(object, patch);
        object["metadata"]["resourceVersion"] = json!(version);
        reply(StatusCode::OK, object)
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in fields {
        match (v, target.as_object_mut()) {
            (Value::Null, Some(t)) => {
                t.remove(k);
            }
            (v, Some(t)) => merge(t.entry(k.clone()).or_insert(Value::Null), v),
            (_, None) => {}
        }
    }
}

fn path_of(object: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let api = text(&object["apiVersion"]);
    let ns = text(&object["metadata"]["namespace"]);
    let name = text(&object["metadata"]["name"]);
    let plural = format!("{}s", text(&object["kind"]).to_lowercase());
    let prefix = if api.contains('/') { "apis" } else { "api" };
    format!("/{prefix}/{api}/namespaces/{ns}/{plural}/{name}")
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = code;
    response
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    // The reasons the API server gives, which clients match on (`get_opt` on NotFound).
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT if message == "already exists" => "AlreadyExists",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "MethodNotAllowed",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    reply(code, &body)
}

/// A context whose client talks to `server` and whose gate cache holds `gates`.
pub fn context(server: &ApiServer, gates: &[RolloutGate]) -> Arc<Context> {
    let (store, mut writer): (Store<RolloutGate>, _) = reflector::store();
    for gate in gates {
        server.put(gate);
        writer.apply_watcher_event(&watcher::Event::Apply(gate.clone()));
    }
    let ctx =
        Context::new(server.client(), store, "test").unwrap_or_else(|e| panic!("context: {e}"));
    let ctx = Arc::new(ctx);
    super::gauges::export(&ctx);
    ctx
}

/// A gate over the Rollout `app` in `ns`, from `spec` (pod health when `null`).
pub fn gate(name: &str, spec: Value) -> RolloutGate {
    let spec = match spec {
        Value::Null => json!({"rollouts": {"name": "app"}, "podHealth": {}}),
        spec => spec,
    };
    let gate = json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    });
    serde_json::from_value(gate).unwrap_or_else(|e| panic!("test gate: {e}"))
}

/// A gate that does not parse, with `rollouts` as its `spec.rollouts`, as the cache holds it: a
/// placeholder.
pub fn unreadable_gate(name: &str, rollouts: Value) -> RolloutGate {
    let object = json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "generation": 1, "resourceVersion": "1"},
        "spec": {"rollouts": rollouts, "mode": "Sometimes"},
    });
    let object = serde_json::from_value(object).unwrap_or_else(|e| panic!("test object: {e}"));
    super::watch::read(object)
}

/// The Rollout `app` in `ns`: a canary with two `pause: {}` steps, and `status`.
pub fn rollout(status: Value) -> Rollout {
    let rollout = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "app", "namespace": "ns", "generation": 2, "resourceVersion": "7"},
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"pause": {}}]}}},
        "status": status,
    });
    serde_json::from_value(rollout).unwrap_or_else(|e| panic!("test rollout: {e}"))
}

/// A ready pod of revision `hash`, that never restarted.
pub fn pod(name: &str, hash: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns",
            "labels": {"rollouts-pod-template-hash": hash}},
        "status": {"podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "app",
                "imageID": "", "state": {"running": {}}}]},
    })
}

/// `rollout`'s status at canary step `step` of revision `hash`, paused since `started`.
pub fn paused(hash: &str, step: i32, started: &str) -> Value {
    json!({
        "observedGeneration": "2", "currentStepIndex": step, "currentPodHash": hash,
        "stableRS": "stable1", "controllerPause": true,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": started}],
    })
}

/// The pause [`paused`]`("abc", 1, T0)` is at, under generation `generation` of gate `g`.
pub fn pause_key(generation: i64, policy_hash: &str) -> PauseKey {
    PauseKey {
        revision: "abc".into(),
        step: Some(1),
        started: T0.into(),
        gate_uid: "uid-g".into(),
        gate_generation: generation,
        policy_hash: policy_hash.into(),
    }
}

/// When the test pauses began.
pub const T0: &str = "2026-12-01T10:00:00Z";
