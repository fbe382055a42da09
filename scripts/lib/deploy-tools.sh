# shellcheck shell=bash
# What the scripts that render and check the deployment manifests need: helm and kubectl from the
# local stack's build (built first when they are not yet), and a python3 with PyYAML, installed
# into target/deploy-venv when the machine's python3 has none. Sourced; expects ROOT and die.
# Sets PY to that python3 and puts helm and kubectl first on PATH.

deploy_tools() {
  local env
  if ! env=$("$ROOT/scripts/cluster" tools-env 2>/dev/null); then
    "$ROOT/scripts/cluster" build >&2 || die "scripts/cluster build failed: helm and kubectl are built there"
    env=$("$ROOT/scripts/cluster" tools-env) || die "helm or kubectl missing after scripts/cluster build"
  fi
  eval "$env"
  # shellcheck disable=SC2034 # for the script that sources this
  PY=python3
  if ! python3 -c 'import yaml' 2>/dev/null; then
    local venv="$ROOT/target/deploy-venv"
    if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
      printf 'installing PyYAML into %s\n' "$venv" >&2
      { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check 'PyYAML>=6,<7'; } >&2 ||
        die "python3 has no PyYAML and installing it into $venv failed (python3-venv missing?)"
    fi
    # shellcheck disable=SC2034 # for the script that sources this
    PY="$venv/bin/python"
  fi
}
