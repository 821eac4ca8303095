#!/usr/bin/env bash
# `make demo`: registry-operator's main job on this machine, no cluster of your own needed.
# Starts a local kube-apiserver + etcd and two local registries with sample images (one public,
# one behind a password), installs the CRD, runs the operator, applies examples/demo/, waits for
# the scans and shows `kubectl get registries` and a status. KEEP=1 leaves it all running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/.demo
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

wait_file() { # wait_file FILE SECONDS WHAT LOG
  for _ in $(seq "$2"); do [[ -e $1 ]] && return 0; sleep 1; done
  echo "timed out waiting for $3; log:" >&2; tail -n 30 "$4" >&2; exit 1
}

rm -rf "$state" && mkdir -p "$state"
step "Building the operator and the demo environment (first run: several minutes)"
cargo build --release -p registry-operator -p testenv --bins
mkdir -p bin && cp target/release/registry-operator bin/registry-operator
step "Building or reusing the control plane and registry binaries (first run: ~10 minutes, cached afterwards)"
hack/tools.sh controlplane >/dev/null
hack/tools.sh registry >/dev/null

step "Starting kube-apiserver + etcd"
target/release/testenv controlplane --state-dir "$state/cp" >"$state/controlplane.log" 2>&1 &
pids+=($!)
wait_file "$state/cp/ready" 180 "the control plane" "$state/controlplane.log"
export KUBECONFIG=$state/cp/kubeconfig
kubectl() { "$state/cp/kubectl" "$@"; }

step "Starting two registries with sample images"
target/release/testenv demo-registries --state-dir "$state/registries" >"$state/registries.log" 2>&1 &
pids+=($!)
wait_file "$state/registries/ready" 120 "the registries" "$state/registries.log"
set -a; source "$state/registries/env"; set +a
echo "public:  $PUBLIC_URL/$PUBLIC_REPOSITORY"
echo "private: $PRIVATE_URL/$PRIVATE_REPOSITORY (user $PRIVATE_USERNAME)"

step "Installing the Registry CRD"
bin/registry-operator crd | kubectl apply --server-side -f -
kubectl wait --for condition=Established crd/registries.registry.kubecontroller.io --timeout=60s

step "Running the operator (log: .demo/operator.log)"
# The demo registries listen on loopback, which the egress policy closes by default.
bin/registry-operator run --health-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --egress-allow 127.0.0.1/32 >"$state/operator.log" 2>&1 &
pids+=($!)

step "Applying examples/demo/registries.yaml"
perl -pe 's/\$\{(\w+)\}/$ENV{$1}/g' examples/demo/registries.yaml | kubectl apply -f -

step "Waiting for the scans"
for name in demo-app private-app; do
  for _ in $(seq 60); do
    s=$(kubectl get registry "$name" -o jsonpath='{.status.lastScanStatus}')
    [[ -n $s ]] && break
    sleep 1
  done
done

step "kubectl get registries"
kubectl get registries
step "kubectl get registries -o wide"
kubectl get registries -o wide
step "kubectl get registry demo-app -o yaml (status)"
kubectl get registry demo-app -o jsonpath='{.status}' | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))' 2>/dev/null \
  || kubectl get registry demo-app -o yaml
step "kubectl get events"
kubectl get events --sort-by=.metadata.creationTimestamp | tail -n 10

failed=$(kubectl get registries -o jsonpath='{range .items[*]}{.metadata.name}={.status.lastScanStatus}{"\n"}{end}' | grep -v '=Success$' || true)
if [[ -n $failed ]]; then
  echo "not every Registry succeeded: $failed (see .demo/operator.log)" >&2
  exit 1
fi

if [[ ${KEEP:-0} == 1 ]]; then
  step "Everything keeps running. In another shell:"
  echo "  export KUBECONFIG=$KUBECONFIG"
  echo "  $state/cp/kubectl get registries -w"
  echo "Press Ctrl-C to stop."
  wait
else
  step "Done. KEEP=1 make demo leaves the control plane, registries and operator running to explore."
fi
