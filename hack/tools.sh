#!/usr/bin/env bash
# Builds (once) and prints the directory of the Go tools the tests, demo, lint and bench use.
#   hack/tools.sh controlplane   -> dir with kube-apiserver, etcd, kubectl (KUBEBUILDER_ASSETS wins)
#   hack/tools.sh registry       -> dir with registry (CNCF distribution v3)
#   hack/tools.sh lint           -> dir with helm, dmt
#   hack/tools.sh peers          -> dir with crane, regctl (crane also serves the conformance suite's registry)
#   hack/tools.sh docker-registry -> installs distribution 2.8 (Debian's docker-registry) when missing
# Binaries are cached by version under $REGISTRY_OPERATOR_TOOLS (default ~/.cache/registry-operator-tools),
# so only the first run pays for the build (kube-apiserver: 10-20 minutes on 2 cores).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${REGISTRY_OPERATOR_TOOLS:-$HOME/.cache/registry-operator-tools}
export CGO_ENABLED=0 GOFLAGS=-mod=mod

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.5

log() { echo ">> $*" >&2; }

build() { # build <module dir> <out dir> <binary name> <package> [ldflags]
  local mod=$1 out=$2 name=$3 pkg=$4 ldflags=${5:-}
  if [[ -x $out/$name ]]; then return; fi
  mkdir -p "$out"
  log "building $name ($pkg) - first run only, cached in $out"
  (cd "$root/tools/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
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
  lint)
    out=$cache/lint-$(sha256sum "$root/tools/lint/go.mod" | cut -c1-12)
    build lint "$out" helm helm.sh/helm/v3/cmd/helm
    # dmt only when tools/lint pins it: the Go module proxy here serves no version of it
    # (see tools/lint/go.mod); hack/lint.sh says so and runs the chart_render checks instead.
    if grep -v '^[[:space:]]*//' "$root/tools/lint/go.mod" | grep -qE '(^|[[:space:]])github.com/deckhouse/dmt v'; then
      build lint "$out" dmt github.com/deckhouse/dmt/cmd/dmt
    fi
    echo "$out" ;;
  peers)
    out=$cache/peers-$(sha256sum "$root/tools/peers/go.mod" | cut -c1-12)
    build peers "$out" crane github.com/google/go-containerregistry/cmd/crane
    build peers "$out" regctl github.com/regclient/regclient/cmd/regctl
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
  *) echo "usage: $0 controlplane|registry|lint|peers|docker-registry" >&2; exit 2 ;;
esac
