#!/usr/bin/env bash
# Deckhouse module checks (`make lint`):
#   1. dmt lint .                    Deckhouse's module linter, zero errors and zero warnings, with and
#                                    without MODULES_MODULE_TAG (rules off: .dmtlint.yaml)
#   2. helm lint, helm template      the chart renders with default values, with every setting changed
#                                    and with a Deckhouse cluster configuration (networks, proxy)
#   3. server-side dry run           a real kube-apiserver (testenv) accepts every rendered object and
#                                    crds/registry.yaml; its authorizer confirms the operator's RBAC
#   4. cargo test --test chart_render settings land where they should; Deckhouse conventions hold
#
# Tools come from hack/tools.sh lint (helm, promtool; dmt from DMT, PATH or ../shared) and
# hack/tools.sh controlplane (kube-apiserver, etcd, kubectl; KUBEBUILDER_ASSETS wins).
# Set LINT_KEEP=1 to keep the work directory (rendered manifests, apiserver logs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo ">> $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/registry-operator-lint.XXXXXX")
cp_pid=""
cleanup() {
  if [[ -n $cp_pid ]] && kill -0 "$cp_pid" 2>/dev/null; then
    kill -TERM "$cp_pid" 2>/dev/null || true
    wait "$cp_pid" 2>/dev/null || true
  fi
  if [[ -n ${LINT_KEEP:-} ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

tools=$(hack/tools.sh lint)
helm=$tools/helm
[[ -x $helm ]] || fail "no helm in $tools"

# ---------------------------------------------------------------------------------------------
# 1. dmt: zero errors and zero warnings, rendered the way Deckhouse's lint action renders it (no
#    build-time environment) and the way a release build does (MODULES_MODULE_TAG set).
dmt_lint() { # dmt_lint <label> [env args...]
  local label=$1; shift
  local out rc=0 summary
  out=$(env "$@" "$tools/dmt" lint . 2>&1) || rc=$?
  out=$(sed 's/\x1b\[[0-9;]*m//g' <<<"$out")          # no colours in logs
  summary=$(grep -E '^║ (Critical|Errors|Warnings):' <<<"$out" | tr -s ' ' || true)
  if [[ $rc -ne 0 ]] || [[ $(grep -c . <<<"$summary") -ne 3 ]] || grep -qvE ': 0$' <<<"$summary"; then
    echo "$out" >&2
    fail "dmt lint ($label): exit $rc, summary: $(tr '\n' ' ' <<<"$summary")"
  fi
  log "dmt lint ($label): $(tr '\n' ' ' <<<"$summary")"
}
if [[ -x $tools/dmt ]]; then
  log "dmt lint . ($("$tools/dmt" --version 2>/dev/null | head -n1 || echo unknown version))"
  dmt_lint "no MODULES_MODULE_TAG" -u MODULES_MODULE_TAG
  dmt_lint "MODULES_MODULE_TAG=v0.1.0" MODULES_MODULE_TAG=v0.1.0
else
  cat >&2 <<'MSG'
!!! ----------------------------------------------------------------------------------------
!!! dmt (Deckhouse's module linter) is not installed: the module was NOT checked by dmt.
!!! Install it with
!!!     go install github.com/deckhouse/dmt/cmd/dmt@latest
!!! (or through trdl: https://github.com/deckhouse/dmt), or point DMT at a dmt binary.
!!! ----------------------------------------------------------------------------------------
MSG
  [[ ${CI:-} == true ]] && fail "dmt is required in CI (CI=true)"
fi

# ---------------------------------------------------------------------------------------------
# 2. helm template
api_versions=(--api-versions autoscaling.k8s.io/v1/VerticalPodAutoscaler
              --api-versions monitoring.coreos.com/v1/ServiceMonitor
              --api-versions monitoring.coreos.com/v1/PodMonitor)
render() { # render <name> <helm args...>
  local name=$1; shift
  "$helm" template registry-operator . "$@" > "$work/$name.yaml" \
    || fail "helm template ($name) failed"
  log "helm template ($name): $(grep -c '^kind:' "$work/$name.yaml") objects"
}
"$helm" lint --strict --quiet . -f hack/testdata/values-default.yaml -f hack/testdata/values-custom.yaml \
  || fail "helm lint failed"
render default "${api_versions[@]}" -f hack/testdata/values-default.yaml
render custom "${api_versions[@]}" -f hack/testdata/values-default.yaml -f hack/testdata/values-custom.yaml
# A cluster Deckhouse installed: its networks and its HTTP proxy reach the operator.
render cluster "${api_versions[@]}" -f hack/testdata/values-default.yaml -f hack/testdata/values-custom.yaml \
  -f hack/testdata/values-cluster.yaml
# Without the VPA and Prometheus APIs (and modules): the guarded objects must simply be left out.
render bare -f hack/testdata/values-default.yaml --set 'global.enabledModules={}'
if grep -qE '^kind: (VerticalPodAutoscaler|ServiceMonitor|PrometheusRule|GrafanaDashboardDefinition)$' "$work/bare.yaml"; then
  fail "VPA/ServiceMonitor/PrometheusRule/GrafanaDashboardDefinition rendered although their APIs are absent"
fi

# ---------------------------------------------------------------------------------------------
# 3. server-side dry run against a real kube-apiserver
log "starting kube-apiserver + etcd (testenv controlplane)"
cargo build -q -p testenv --bin testenv
"${CARGO_TARGET_DIR:-$root/target}/debug/testenv" controlplane --state-dir "$work/cp" > "$work/controlplane.log" 2>&1 &
cp_pid=$!
for _ in $(seq 1 1800); do
  [[ -e $work/cp/ready ]] && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$work/controlplane.log" >&2; fail "control plane exited"; }
  sleep 1
done
[[ -e $work/cp/ready ]] || { cat "$work/controlplane.log" >&2; fail "control plane not ready"; }
export KUBECONFIG=$work/cp/kubeconfig
kubectl=$work/cp/kubectl
[[ -x $kubectl ]] || kubectl=$(hack/tools.sh controlplane)/kubectl

# What Deckhouse provides around the module: the VPA and prometheus-operator CRDs, the
# d8-monitoring namespace (ServiceMonitors live there) and the module's own namespace, which a
# dry run cannot create for the objects inside it.
"$kubectl" apply --server-side -f hack/testdata/crds-vpa.yaml -f hack/testdata/crds-prometheus-operator.yaml >/dev/null
"$kubectl" wait --for condition=Established --timeout=60s \
  crd/verticalpodautoscalers.autoscaling.k8s.io crd/servicemonitors.monitoring.coreos.com \
  crd/podmonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com \
  crd/grafanadashboarddefinitions.deckhouse.io >/dev/null
"$kubectl" create namespace d8-monitoring >/dev/null
"$kubectl" create namespace d8-registry-operator >/dev/null

dry_run() { # dry_run <file>
  local out
  if ! out=$("$kubectl" apply --server-side --dry-run=server --field-manager=registry-operator-lint \
        -f "$1" 2>&1); then
    echo "$out" >&2
    fail "the API server rejected objects of $1"
  fi
  log "dry run $(basename "$1"): $(grep -c . <<<"$out") objects accepted"
}
dry_run crds/registry.yaml
dry_run "$work/default.yaml"
dry_run "$work/custom.yaml"
dry_run "$work/cluster.yaml"
dry_run "$work/bare.yaml"

# The RBAC really grants what the operator needs, and no more: apply the default render for real
# (a bare apiserver runs no Pods) and ask the API server's own authorizer.
"$kubectl" apply --server-side --field-manager=registry-operator-lint -f crds/registry.yaml >/dev/null
"$kubectl" apply --server-side --field-manager=registry-operator-lint -f "$work/default.yaml" >/dev/null
sa=system:serviceaccount:d8-registry-operator:registry-operator
can() { # can yes|no <kubectl auth can-i args...>
  local want=$1; shift
  local got
  got=$("$kubectl" auth can-i --as="$sa" "$@" 2>/dev/null || true)
  [[ $got == "$want" ]] || fail "RBAC: can-i $* = ${got:-error}, want $want"
}
# The authorizer sees new RBAC objects through its informers: wait until the first grant shows.
for _ in $(seq 1 30); do
  [[ $("$kubectl" auth can-i --as="$sa" create tokenreviews.authentication.k8s.io 2>/dev/null) == yes ]] && break
  sleep 1
done
can yes list registries.registry.kubecontroller.io --all-namespaces
can yes watch registries.registry.kubecontroller.io --all-namespaces
can yes patch registries.registry.kubecontroller.io --subresource=status -n team-a
can yes get secrets -n team-a
can yes list secrets --all-namespaces
can yes watch secrets --all-namespaces
can yes create events.events.k8s.io -n team-a
can yes patch events.events.k8s.io -n team-a
can yes create leases.coordination.k8s.io -n d8-registry-operator
can yes update leases.coordination.k8s.io -n d8-registry-operator
can yes list leases.coordination.k8s.io -n d8-registry-operator
can yes delete leases.coordination.k8s.io -n d8-registry-operator
can yes create tokenreviews.authentication.k8s.io
can yes create subjectaccessreviews.authorization.k8s.io
can no create registries.registry.kubecontroller.io -n team-a
can no delete registries.registry.kubecontroller.io -n team-a
can no patch registries.registry.kubecontroller.io -n team-a
can no create secrets -n team-a
can no update secrets -n team-a
can no create leases.coordination.k8s.io -n team-a
can no patch leases.coordination.k8s.io -n d8-registry-operator
can no update registries.registry.kubecontroller.io --subresource=status -n team-a
can no create events -n team-a
can no list pods --all-namespaces
log "RBAC: the operator's ServiceAccount can do what it needs and no more"

kill -TERM "$cp_pid" 2>/dev/null || true
wait "$cp_pid" 2>/dev/null || true
cp_pid=""

# ---------------------------------------------------------------------------------------------
# 4. chart render test
log "cargo test -p testenv --test chart_render"
cargo test -q -p testenv --test chart_render

log "lint passed"
