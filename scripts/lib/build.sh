# shellcheck shell=bash
# Builds the stack's binaries from Go modules into a cache keyed by the pins and the Go version,
# and the tools that are not stack servers (helm) into a cache of their own.
# Sourced by scripts/cluster; expects ROOT, PINS and log helpers from there.

# The pins of the tools: left out of the stack's key, and the whole of the tools' key.
TOOL_PINS='^(HELM_VERSION|TOOLS_RECIPE)='
# The benchmark's pins (scripts/lib/build-telegraf keys its own cache): in neither key.
BENCH_PINS='^TELEGRAF_'

cache_key() {
  { grep -v '^#' "$PINS" | grep -Ev "$TOOL_PINS" | grep -Ev "$BENCH_PINS"; go env GOVERSION; } | sha256sum | cut -c1-16
}

tools_key() {
  { grep -E "$TOOL_PINS" "$PINS"; go env GOVERSION; } | sha256sum | cut -c1-16
}

tools_dir() { printf '%s/tools-%s' "$CACHE_ROOT" "$(tools_key)"; }

# Inside a component's build: say what failed and let `timed` report it.
fail() { log "error: $*"; return 1; }

# Every Go module fetch fails fast with the module's name when the proxy does not have it.
go_download() {
  local mod=$1 out
  out=$(go mod download -json "$mod" 2>&1) || fail "the Go module proxy does not serve $mod: $out" || return 1
  printf '%s' "$out"
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# timed NAME FUNCTION: builds one component into its own log and records how long it took.
timed() {
  local name=$1; shift
  local t0=$SECONDS log="$BUILD_DIR/build-$name.log"
  log "building $name ..."
  if ! "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building $name failed (full log: $log)"
  fi
  local took=$((SECONDS - t0))
  log "built $name in ${took}s"
  printf '%s\t%s\n' "$name" "$took" >>"$BUILD_DIR/timings.tsv"
}

new_wrapper() {
  local dir=$1
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init tollgate.local/wrapper >/dev/null 2>&1 &&
    go mod edit -go=1.26.0 -godebug=default=go1.26)
}

go_build_into() { # dir, packages...
  local dir=$1; shift
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BUILD_DIR/bin/" "$@")
}

build_kubernetes() {
  local dir="$WORK_DIR/kubernetes" v=$KUBERNETES_VERSION gomod
  new_wrapper "$dir" || return 1
  gomod=$(go_download "k8s.io/kubernetes@$v" | json_field GoMod) || return 1
  # kubernetes requires its staging modules at v0.0.0; map each one to the matching tag.
  local staging=${v/#v1./v0.}
  grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u |
    while read -r m; do printf -- '-replace=%s=%s@%s\n' "$m" "$m" "$staging"; done |
    (cd "$dir" && xargs go mod edit) || return 1
  # Every package is named with its version: a bare `go get -tool` would resolve the newest release.
  (cd "$dir" && go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$v" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$v" "k8s.io/kubernetes/cmd/kube-scheduler@$v" &&
    go mod tidy) || fail "resolving k8s.io/kubernetes@$v failed" || return 1
  go_build_into "$dir" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
}

# kubectl at the server's own version: the machine's kubectl may be too far from 1.36 to be supported.
build_kubectl() {
  [ -f "$WORK_DIR/kubernetes/go.mod" ] || build_kubernetes || return 1
  (cd "$WORK_DIR/kubernetes" && go get -tool "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION" &&
    go mod tidy) || fail "resolving kubectl $KUBERNETES_VERSION failed" || return 1
  go_build_into "$WORK_DIR/kubernetes" k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir="$WORK_DIR/etcd"
  new_wrapper "$dir" || return 1
  go_download "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null || return 1
  (cd "$dir" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy) ||
    fail "resolving etcd $ETCD_VERSION failed" || return 1
  go_build_into "$dir" go.etcd.io/etcd/server/v3 && mv "$BUILD_DIR/bin/server" "$BUILD_DIR/bin/etcd"
}

build_kwok() {
  local d
  d=$(go_download "sigs.k8s.io/kwok@$KWOK_VERSION" | json_field Dir) || return 1
  GOBIN="$BUILD_DIR/bin" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || return 1
  # The default stages: nodes become Ready and keep a lease, pods become Ready and get deleted.
  local s="$d/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$s/$f" || return 1; printf '\n---\n'
  done >"$BUILD_DIR/share/kwok-stages.yaml"
}

build_argo_rollouts() {
  local dir="$WORK_DIR/argo" gomod d
  local info
  info=$(go_download "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION") || return 1
  gomod=$(json_field GoMod <<<"$info") && d=$(json_field Dir <<<"$info") || return 1
  new_wrapper "$dir" || return 1
  # argo-rollouts pins its k8s libraries with replace lines; the wrapper must carry the same ones.
  python3 - "$gomod" <<'PY' | (cd "$dir" && xargs go mod edit)
import re, sys
text = open(sys.argv[1]).read()
lines = []
for block in re.findall(r'replace\s*\((.*?)\)', text, re.S):
    lines += block.strip().splitlines()
lines += re.findall(r'^replace\s+([^(\n].*)$', text, re.M)
for line in lines:
    parts = line.split()
    if len(parts) == 4 and parts[1] == '=>':
        print(f'-replace={parts[0]}={parts[2]}@{parts[3]}')
PY
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  (cd "$dir" && go get -tool "github.com/argoproj/argo-rollouts/cmd/rollouts-controller@$ARGO_ROLLOUTS_VERSION" &&
    go mod tidy) ||
    fail "resolving argo-rollouts $ARGO_ROLLOUTS_VERSION failed" || return 1
  go_build_into "$dir" github.com/argoproj/argo-rollouts/cmd/rollouts-controller || return 1
  mkdir -p "$BUILD_DIR/share/argo-crds"
  cp "$d"/manifests/crds/*-crd.yaml "$BUILD_DIR/share/argo-crds/" || return 1
  chmod -R u+w "$BUILD_DIR/share/argo-crds"
}

# Prometheus and VictoriaMetrics come from Debian's packages, installed only when missing.
ensure_debian_packages() {
  local missing=() p
  for p in prometheus victoria-metrics; do command -v "$p" >/dev/null || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return 0
  log "installing Debian's ${missing[*]} ..."
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  # The packages start system services (:9090, :8428) where systemd runs; the stack runs its own.
  command -v systemctl >/dev/null && $SUDO systemctl disable --now "${missing[@]}" >/dev/null 2>&1 || true
}

COMPONENTS=(etcd kwok argo-rollouts kubernetes kubectl)
# The components in lanes that share no work directory, built side by side: on two cores one
# lane's module downloads and single-threaded links leave the CPU to another's compiles (a cold
# build took 1,190 s one after another). kubectl is built in the kubernetes wrapper module.
LANES=("kubernetes kubectl" "argo-rollouts" "etcd kwok")
TOOLS=(helm)

# helm, for the chart under deploy/helm/ (scripts/check-deploy, scripts/render-manifests). The
# version is stamped in as upstream's Makefile does, so `helm version` and the chart's
# .Capabilities.HelmVersion say which helm it is.
build_helm() {
  local dir="$WORK_DIR/helm" v=$HELM_VERSION
  new_wrapper "$dir" || return 1
  go_download "helm.sh/helm/v4@$v" >/dev/null || return 1
  (cd "$dir" && go get -tool "helm.sh/helm/v4/cmd/helm@$v" && go mod tidy) ||
    fail "resolving helm $v failed" || return 1
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -o "$BUILD_DIR/bin/" \
    -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$v -X helm.sh/helm/v4/internal/version.metadata=" \
    helm.sh/helm/v4/cmd/helm)
}

build_all() {
  build_stack
  build_tools
}

build_stack() {
  ensure_debian_packages
  command -v go >/dev/null || die "go is not on PATH"
  BUILD_DIR="$CACHE_ROOT/$(cache_key)"
  all_built && return 0
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/build.lock"
  log "waiting for the build lock ..." && flock 9
  mkdir -p "$BUILD_DIR/bin" "$BUILD_DIR/share"
  WORK_DIR="$CACHE_ROOT/work" && mkdir -p "$WORK_DIR"
  local t0=$SECONDS lane pids=() failed=0 p
  for lane in "${LANES[@]}"; do
    build_lane "$lane" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" = 0 ] || die "building the stack failed (logs: $BUILD_DIR/build-*.log)"
  log "stack built in $((SECONDS - t0))s into $BUILD_DIR"
  exec 9>&-
}

# Each component is marked done on its own, so an interrupted build resumes where it stopped
# and another build that held the lock before us leaves nothing to do.
build_lane() {
  local c
  for c in $1; do
    [ -f "$BUILD_DIR/.done-$c" ] && continue
    timed "$c" "build_${c//-/_}" && touch "$BUILD_DIR/.done-$c"
  done
}

all_built() {
  local c
  for c in "${COMPONENTS[@]}"; do [ -f "$BUILD_DIR/.done-$c" ] || return 1; done
}

# The tools, each marked done on its own as the stack's components are, under the same lock.
build_tools() {
  command -v go >/dev/null || die "go is not on PATH"
  BUILD_DIR=$(tools_dir)
  tools_built && return 0
  local t
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/build.lock"
  log "waiting for the build lock ..." && flock 9
  mkdir -p "$BUILD_DIR/bin"
  WORK_DIR="$CACHE_ROOT/work" && mkdir -p "$WORK_DIR"
  for t in "${TOOLS[@]}"; do
    [ -f "$BUILD_DIR/.done-$t" ] && continue
    timed "$t" "build_${t//-/_}" && touch "$BUILD_DIR/.done-$t"
  done
  log "tools built into $BUILD_DIR"
  exec 9>&-
}

tools_built() {
  local t
  for t in "${TOOLS[@]}"; do [ -f "$BUILD_DIR/.done-$t" ] || return 1; done
}

# The PATH for the stack's kubectl and the tools, whether or not the stack is up.
tools_env() {
  local bin tbin
  bin="$CACHE_ROOT/$(cache_key)/bin" tbin="$(tools_dir)/bin"
  if [ ! -x "$bin/kubectl" ] || [ ! -x "$tbin/helm" ]; then
    die "kubectl or helm is not built (run scripts/cluster build)"
  fi
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this line
  printf 'export PATH=%s:%s:$PATH\n' "$bin" "$tbin"
}
