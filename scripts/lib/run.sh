# shellcheck shell=bash
# Starts, inspects and stops the local stack. Sourced by scripts/cluster.
# Every component runs on 127.0.0.1 on a free port, logs to $STATE/logs/NAME.log and has a pid file
# under $STATE/pids, numbered so that `down` stops them in reverse start order.

# Fake pod IPs come from this loopback range, so a test server can listen on a pod's own IP (tests/e2e/support/podserver.rs).
POD_CIDR=127.10.0.0/16
KWOK_NODES=3
UP_TIMEOUT=${TOLLGATE_UP_TIMEOUT:-180}

bin_dir() { printf '%s/%s/bin' "$CACHE_ROOT" "$(cache_key)"; }
share_dir() { printf '%s/%s/share' "$CACHE_ROOT" "$(cache_key)"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND until it succeeds or UP_TIMEOUT passes.
wait_until() {
  local what=$1; shift
  local deadline=$((SECONDS + UP_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "timed out after ${UP_TIMEOUT}s waiting for $what (logs: $STATE/logs/)"
    fi
    sleep 0.3
  done
}

# start ORDER NAME COMMAND...: runs COMMAND in the background with its own log and pid file.
start() {
  local order=$1 name=$2; shift 2
  log "starting $name"
  "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$order-$name.pid"
}

alive() { # pid file
  local pid
  pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

kc() { "$(bin_dir)/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

make_pki() {
  local p="$STATE/pki"
  mkdir -p "$p" && cd "$p" || return 1
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tollgate-local-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
    -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >san.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile san.ext -out apiserver.crt 2>/dev/null
  # The admin identity: a client certificate in system:masters. The extensions make it X.509 v3,
  # which rustls requires.
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=tollgate-admin" \
    -keyout admin.key -out admin.csr 2>/dev/null
  printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile client.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

write_kubeconfig() {
  local p="$STATE/pki"
  cat >"$STATE/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: tollgate-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $p/ca.crt
users:
- name: admin
  user:
    client-certificate: $p/admin.crt
    client-key: $p/admin.key
contexts:
- name: tollgate-local
  context: {cluster: tollgate-local, user: admin}
current-context: tollgate-local
KC
}

start_etcd() {
  local peer
  peer=$(free_port)
  start 10 etcd "$BIN/etcd" --name tollgate --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "tollgate=http://127.0.0.1:$peer" --unsafe-no-fsync=true --log-level=warn
  wait_until etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  local p="$STATE/pki"
  start 20 kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port "$API_PORT" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none --tls-cert-file "$p/apiserver.crt" \
    --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --authorization-mode=RBAC --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true --profiling=false --cert-dir "$STATE/pki/generated"
  wait_until kube-apiserver kc get --raw /readyz
}

start_controllers() {
  local k="$STATE/kubeconfig" common
  # Client rate limits well above the defaults (20 QPS), so a thousand Rollouts settle in minutes.
  common=(--kubeconfig "$k" --authentication-kubeconfig "$k" --authorization-kubeconfig "$k"
    --leader-elect=false --bind-address=127.0.0.1 --profiling=false --kube-api-qps=300 --kube-api-burst=600)
  start 30 kube-controller-manager "$BIN/kube-controller-manager" "${common[@]}" \
    --secure-port "$KCM_PORT" --use-service-account-credentials=false \
    --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
    --cluster-name=tollgate-local
  start 40 kube-scheduler "$BIN/kube-scheduler" "${common[@]}" --secure-port "$SCHED_PORT"
  wait_until kube-controller-manager curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_until kube-scheduler curl -skf "https://127.0.0.1:$SCHED_PORT/healthz"
}

fake_node() {
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$1
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$1, kubernetes.io/os: linux}
spec: {}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "5000"}
  capacity: {cpu: "64", memory: 512Gi, pods: "5000"}
---
NODE
}

nodes_ready() {
  [ "$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c True)" -ge "$KWOK_NODES" ]
}

start_kwok() {
  start 50 kwok "$BIN/kwok" --kubeconfig "$STATE/kubeconfig" --manage-all-nodes=true \
    --cidr "$POD_CIDR" --node-ip 127.0.0.1 --server-address "127.0.0.1:$KWOK_PORT" \
    --node-lease-duration-seconds 40 -c "$SHARE/kwok-stages.yaml" -c "$ROOT/scripts/lib/kwok-faults.yaml"
  local i
  for i in $(seq 1 "$KWOK_NODES"); do fake_node "$i"; done | kc apply -f - >/dev/null
  wait_until "KWOK nodes to be Ready" nodes_ready
}

start_argo() {
  kc apply --server-side -f "$SHARE/argo-crds/" >/dev/null
  kc wait --for condition=established --timeout=60s -f "$SHARE/argo-crds/" >/dev/null
  kc create namespace argo-rollouts --dry-run=client -o yaml | kc apply -f - >/dev/null
  # Upstream binds these two ports on 0.0.0.0 with no flag to change it; they are free, random ports.
  POD_NAMESPACE=argo-rollouts start 60 argo-rollouts "$BIN/rollouts-controller" \
    --kubeconfig "$STATE/kubeconfig" --leader-elect=false --metricsPort "$ARGO_METRICS_PORT" \
    --healthzPort "$ARGO_HEALTHZ_PORT" --loglevel info --qps 200 --burst 400
  wait_until "argo-rollouts controller" curl -sf "http://127.0.0.1:$ARGO_HEALTHZ_PORT/healthz"
}

start_prometheus() {
  local d="$STATE/prometheus"
  mkdir -p "$d/targets" "$d/data"
  # Tests add scrape targets at run time by writing JSON files into targets/ (file_sd_configs).
  cat >"$d/prometheus.yml" <<PROM
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
  - job_name: tests
    file_sd_configs:
      - files: ["$d/targets/*.json"]
        refresh_interval: 1s
PROM
  start 70 prometheus prometheus --config.file "$d/prometheus.yml" --storage.tsdb.path "$d/data" \
    --web.listen-address "127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h --web.enable-lifecycle
  wait_until prometheus curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
}

start_victoria_metrics() {
  local d="$STATE/victoria-metrics"
  mkdir -p "$d/data"
  # The same targets Prometheus scrapes, at the same interval. Its query settings stay the defaults
  # (-search.latencyOffset=30s among them); file_sd refresh is a flag here, not a config field.
  cat >"$d/scrape.yml" <<VM
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tests
    file_sd_configs:
      - files: ["$STATE/prometheus/targets/*.json"]
VM
  start 80 victoria-metrics victoria-metrics -httpListenAddr "127.0.0.1:$VM_PORT" \
    -storageDataPath "$d/data" -retentionPeriod 1d -promscrape.config "$d/scrape.yml" \
    -promscrape.fileSDCheckInterval 1s
  wait_until victoria-metrics curl -sf "http://127.0.0.1:$VM_PORT/health"
}

write_env() {
  cat >"$STATE/env" <<ENV
export KUBECONFIG=$STATE/kubeconfig
export PATH=$BIN:\$PATH
export PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export VICTORIA_URL=http://127.0.0.1:$VM_PORT
export TOLLGATE_PROM_TARGETS_DIR=$STATE/prometheus/targets
export TOLLGATE_POD_CIDR=$POD_CIDR
export ETCD_PORT=$ETCD_PORT
export API_PORT=$API_PORT
export KCM_PORT=$KCM_PORT
export SCHED_PORT=$SCHED_PORT
export KWOK_PORT=$KWOK_PORT
export ARGO_METRICS_PORT=$ARGO_METRICS_PORT
export ARGO_HEALTHZ_PORT=$ARGO_HEALTHZ_PORT
export PROM_PORT=$PROM_PORT
export VM_PORT=$VM_PORT
ENV
}

cluster_up() {
  if cluster_status 2>/dev/null; then
    log "already up"
    return 0
  fi
  cluster_down 2>/dev/null
  BIN=$(bin_dir) SHARE=$(share_dir)
  local t0=$SECONDS
  rm -rf "$STATE" && mkdir -p "$STATE/logs" "$STATE/pids"
  for v in ETCD_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT ARGO_METRICS_PORT ARGO_HEALTHZ_PORT PROM_PORT VM_PORT; do
    printf -v "$v" '%s' "$(free_port)"
  done
  write_env
  make_pki || die "creating certificates failed"
  write_kubeconfig
  # A failure part-way leaves nothing running.
  trap 'cluster_down 2>/dev/null' ERR EXIT
  start_etcd
  start_apiserver
  start_controllers
  start_kwok
  start_argo
  start_prometheus
  start_victoria_metrics
  trap - ERR EXIT
  log "stack up in $((SECONDS - t0))s; run: eval \"\$(scripts/cluster env)\""
}

# The components fault tests may stop and start again, and how each is started.
declare -A RESTARTABLE=([kube-apiserver]=start_apiserver [argo-rollouts]=start_argo)

# component_stop NAME: stops one running component, as a crash or an upgrade would.
component_stop() {
  [ -n "${RESTARTABLE[$1]:-}" ] || die "can stop only: ${!RESTARTABLE[*]}"
  local f pid i
  f=$(ls "$STATE"/pids/*-"$1".pid 2>/dev/null | head -n 1)
  [ -n "$f" ] && pid=$(cat "$f") || die "$1 is not running"
  log "stopping $1"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# component_start NAME: starts a stopped component again on its old port; returns once healthy.
component_start() {
  [ -n "${RESTARTABLE[$1]:-}" ] || die "can start only: ${!RESTARTABLE[*]}"
  [ -f "$STATE/env" ] || die "the stack is not up (run scripts/cluster up)"
  # shellcheck disable=SC1091
  source "$STATE/env"
  BIN=$(bin_dir) SHARE=$(share_dir)
  "${RESTARTABLE[$1]}"
}

cluster_env() {
  [ -f "$STATE/env" ] || die "the stack is not up (run scripts/cluster up)"
  cat "$STATE/env"
  # The tools (helm) have a cache of their own; added here, so a stack started before they were
  # built gets them too.
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this line
  printf 'export PATH=%s/bin:$PATH\n' "$(tools_dir)"
}

cluster_status() {
  [ -f "$STATE/env" ] || { log "not up"; return 1; }
  # shellcheck disable=SC1091
  source "$STATE/env"
  local f ok=0
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || { log "not up"; return 1; }
    if ! alive "$f"; then log "$(basename "$f" .pid) is not running"; ok=1; fi
  done
  local checks=(
    "etcd|curl -sf http://127.0.0.1:$ETCD_PORT/health"
    "kube-apiserver|kc get --raw /readyz"
    "kube-controller-manager|curl -skf https://127.0.0.1:$KCM_PORT/healthz"
    "kube-scheduler|curl -skf https://127.0.0.1:$SCHED_PORT/healthz"
    "kwok nodes|nodes_ready"
    "argo-rollouts|curl -sf http://127.0.0.1:$ARGO_HEALTHZ_PORT/healthz"
    "prometheus|curl -sf http://127.0.0.1:$PROM_PORT/-/ready"
    "victoria-metrics|curl -sf http://127.0.0.1:$VM_PORT/health"
  )
  local c
  for c in "${checks[@]}"; do
    # shellcheck disable=SC2086
    if ! eval "${c#*|}" >/dev/null 2>&1; then log "${c%%|*} is not healthy"; ok=1; fi
  done
  return $ok
}

cluster_down() {
  [ -d "$STATE/pids" ] || return 0
  local f pid pids=() i
  # Signal in reverse start order (clients before the servers they talk to), then wait for all.
  for f in $(ls -r "$STATE"/pids/*.pid 2>/dev/null); do
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping $(basename "$f" .pid | cut -d- -f2-)"
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$f"
  done
  for i in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$STATE/env"
}
