#!/usr/bin/env bash
# Builds (once) and prints the directory of the Go tools the tests, demo, lint and bench use.
#   hack/tools.sh controlplane   -> dir with kube-apiserver, etcd, kubectl (KUBEBUILDER_ASSETS wins)
#   hack/tools.sh registry       -> dir with registry (CNCF distribution v3)
#   hack/tools.sh chart          -> dir with helm, promtool (the chart render test)
#   hack/tools.sh lint           -> dir with helm, promtool and, when it can be had, dmt
#   hack/tools.sh peers          -> dir with crane, regctl, ggcr-digests (crane also serves the conformance suite's registry)
#   hack/tools.sh docker-registry -> installs distribution 2.8 (Debian's docker-registry) when missing
# Binaries are cached by version under $REGISTRY_OPERATOR_TOOLS (default ~/.cache/registry-operator-tools),
# so only the first run pays for the build (kube-apiserver: 10-20 minutes on 2 cores).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${REGISTRY_OPERATOR_TOOLS:-$HOME/.cache/registry-operator-tools}
export CGO_ENABLED=0 GOFLAGS=-mod=mod

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
DMT_CACHE=dmt-v0.1.105-1

log() { echo ">> $*" >&2; }

# Replaces dst with a symlink to src in one rename, so concurrent runs never see it missing.
link() { # link <src> <dst>
  ln -sfn "$1" "$2.tmp.$$" && mv -Tf "$2.tmp.$$" "$2"
}

build() { # build <module dir> <out dir> <binary name> <package> [ldflags]
  local mod=$1 out=$2 name=$3 pkg=$4 ldflags=${5:-}
  if [[ -x $out/$name ]]; then return; fi
  mkdir -p "$out"
  log "building $name ($pkg) - first run only, cached in $out"
  (cd "$root/tools/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp.$$" "$pkg")
  mv "$out/$name.tmp.$$" "$out/$name"
}

case "${1:-}" in
  controlplane)
    if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
      for b in kube-apiserver etcd kubectl; do
        [[ -x $KUBEBUILDER_ASSETS/$b ]] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b" >&2; exit 1; }
      done
      echo "$KUBEBUILDER_ASSETS"; exit 0
    fi
    out=$cache/controlplane-$K8S_VERSION-etcd-$ETCD_VERSION
    v="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35"
    build k8s "$out" etcd go.etcd.io/etcd/server/v3
    build k8s "$out" kubectl k8s.io/kubernetes/cmd/kubectl "$v"
    build k8s "$out" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$v"
    echo "$out" ;;
  registry)
    out=$cache/registry-$(grep -oE 'distribution/v3 v[0-9.]+' "$root/tools/registry/go.mod" | cut -d' ' -f2)
    build registry "$out" registry github.com/distribution/distribution/v3/cmd/registry
    echo "$out" ;;
  chart)
    out=$cache/chart-$(cat "$root/tools/lint/go.sum" "$root/tools/promtool/go.sum" | sha256sum | cut -c1-12)
    build lint "$out" helm helm.sh/helm/v3/cmd/helm
    build promtool "$out" promtool github.com/prometheus/prometheus/cmd/promtool
    echo "$out" ;;
  lint)
    chart=$("$0" chart)
    # dmt, Deckhouse's module linter: the Go module proxy serves no version of it, so it comes
    # from DMT (a path), else `dmt` on PATH, else ../shared's source snapshot (these machines, CI).
    dmt=""
    if [[ -n ${DMT:-} ]]; then
      [[ -x $DMT ]] || { echo "DMT=$DMT is not an executable" >&2; exit 1; }
      dmt=$DMT
    elif command -v dmt >/dev/null; then
      dmt=$(command -v dmt)
    elif [[ -x $root/../shared/tools/build-dmt.sh ]]; then
      [[ -x $cache/$DMT_CACHE/dmt ]] || log "building dmt from ../shared (~5 minutes, first run only), cached in $cache/$DMT_CACHE"
      dmt=$("$root/../shared/tools/build-dmt.sh" "$cache/$DMT_CACHE" | tail -n1)
    else
      log "dmt: not found (no DMT, no dmt on PATH, no ../shared/tools/build-dmt.sh); hack/lint.sh says how to install it"
    fi
    # One directory per helm/promtool build and dmt binary, so that runs with another dmt (or
    # none) never change what a concurrent run sees.
    out=$cache/lint-$(basename "$chart")-$(printf '%s' "${dmt:-none}" | sha256sum | cut -c1-8)
    mkdir -p "$out"
    link "$chart/helm" "$out/helm"
    link "$chart/promtool" "$out/promtool"
    [[ -z $dmt ]] || link "$(realpath "$dmt")" "$out/dmt"
    echo "$out" ;;
  peers)
    out=$cache/peers-$(cat "$root/tools/peers/go.mod" "$root/tools/peers/cmd/ggcr-digests/main.go" | sha256sum | cut -c1-12)
    build peers "$out" crane github.com/google/go-containerregistry/cmd/crane
    build peers "$out" regctl github.com/regclient/regclient/cmd/regctl
    build peers "$out" ggcr-digests ./cmd/ggcr-digests
    echo "$out" ;;
  docker-registry)
    # distribution 2.8 for the conformance suite: Debian packages it; nothing to build.
    if ! command -v docker-registry >/dev/null; then
      log "installing docker-registry (distribution 2.8) with apt"
      sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry >&2 \
        || { $sudo apt-get update >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry >&2; }
    fi
    dirname "$(command -v docker-registry)" ;;
  *) echo "usage: $0 controlplane|registry|chart|lint|peers|docker-registry" >&2; exit 2 ;;
esac
