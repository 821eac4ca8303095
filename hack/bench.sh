#!/usr/bin/env bash
# `make bench`: installs what the benchmarks need, builds the binaries, and runs the bench crate,
# which regenerates BENCHMARKS.md and docs/bench/scan-time.svg from measurements.
#
#   hack/bench.sh                      # the full run (~30 minutes on 2 cores)
#   hack/bench.sh --scale-objects 0    # extra flags go to the bench binary (see --help)
#   hack/bench.sh --only hostile       # one section alone, printed (BENCHMARKS.md left alone)
#   hack/bench.sh --only scale --scale-objects 1200 --scale-repos 120   # section 4 alone, smaller
#   hack/bench.sh --only created       # the cost of --created (#17) on the 2,000-tag repository
#   hack/bench.sh --only policy        # version policy evaluation over 20,000 tags (seconds)
#
# Tools: skopeo and jq from Debian (apt-get), oha from crates.io (cargo install, cached under
# $REGISTRY_OPERATOR_TOOLS), crane and regctl from tools/peers, the registry, etcd and
# kube-apiserver from the other tools modules (hack/tools.sh builds and caches all of them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${REGISTRY_OPERATOR_TOOLS:-$HOME/.cache/registry-operator-tools}
OHA_VERSION=1.16.0

log() { echo ">> $*" >&2; }

# Debian packages: skopeo (a peer) and jq (its tag list is JSON).
missing=()
for pkg in skopeo jq; do
  command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt-get)"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# oha, the load tool for the registry's ceiling (wrk cannot: it waits for a body after HEAD).
oha_root=$cache/oha-$OHA_VERSION
oha=$(command -v oha || true)
if [[ -z $oha || $("$oha" --version 2>/dev/null) != "oha $OHA_VERSION" ]]; then
  oha=$oha_root/bin/oha
  if [[ ! -x $oha ]]; then
    log "installing oha $OHA_VERSION (cargo install, first run only, cached in $oha_root)"
    cargo install --quiet --locked --version "$OHA_VERSION" --root "$oha_root" oha
  fi
fi

# Go tools: the registry, the control plane, and the peers crane + regctl.
hack/tools.sh registry >/dev/null
hack/tools.sh controlplane >/dev/null
peers=$(hack/tools.sh peers)

log "building bin/registry-operator and the bench (release)"
make --no-print-directory build >/dev/null
cargo build --quiet --release -p bench

log "running the benchmarks"
exec "${CARGO_TARGET_DIR:-target}/release/bench" --oha "$oha" --peers-dir "$peers" "$@"
