#!/usr/bin/env bash
# Runs every test. On a fresh Debian/Ubuntu machine it first installs what
# the tests need from the distribution: redis-server and redis-cli (real
# nodes, replicas and clusters), prometheus (promtool, and the server for
# end-to-end checks), prometheus-alertmanager (notification checks), curl
# (a real HTTPS client for the web-config tests), buildah (builds the
# container image, tests/image.rs) and systemd (systemd-analyze for the
# unit), prometheus-redis-exporter (the peer, for the side-by-side and
# parity tests of the drop-in promise), chromium (headless, loads the
# /insight page, tests/insight_page.rs). From PyPI, a pinned kubernetes-validate (schemas of the core
# Kubernetes kinds; it brings jsonschema and PyYAML, which check the
# Prometheus Operator kinds). kubectl comes with the machine image; without
# it the Kubernetes tests say they skip (and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ -x /usr/bin/prometheus-redis-exporter ] || need+=(prometheus-redis-exporter)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

KUBERNETES_VALIDATE_VERSION=1.32.0
if ! python3 -m kubernetes_validate --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
  echo "installing: kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (PyPI)"
  pip=(python3 -m pip install -q --disable-pip-version-check)
  # A distribution's own python3 refuses pip installs (PEP 668) unless told.
  "${pip[@]}" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
    "${pip[@]}" --break-system-packages "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
command -v kubectl >/dev/null 2>&1 ||
  echo "warning: kubectl not found: the Kubernetes manifest tests will skip" >&2

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast
