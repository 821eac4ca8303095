# registry-operator developer commands. Everything runs from a fresh clone: Go tools are built
# once into ~/.cache/registry-operator-tools (see hack/tools.sh).
SHELL := /bin/bash
CARGO ?= cargo
BIN := bin/registry-operator

.PHONY: all mod-tidy generate manifests build run test fmt vet lint demo bench tools clean

all: build

mod-tidy: ## Fetch Rust and Go dependencies
	$(CARGO) fetch
	for m in tools/*/; do (cd $$m && go mod download); done

generate: manifests ## Rust needs no DeepCopy code; generating means regenerating the CRD

manifests: ## Write crds/registry.yaml from the Rust types (a test fails when it is stale)
	$(CARGO) run -q -p registry-operator -- crd > crds/registry.yaml.tmp
	mv crds/registry.yaml.tmp crds/registry.yaml

build: ## Release binary at bin/registry-operator
	$(CARGO) build --release -p registry-operator
	@mkdir -p bin && cp $${CARGO_TARGET_DIR:-target}/release/registry-operator $(BIN)
	@echo "built $(BIN)"

run: build ## Run the operator against the current kubeconfig (installs nothing; see README)
	$(BIN) run

test: ## Whole suite: unit + integration tests against a real registry and kube-apiserver
	hack/tools.sh controlplane >/dev/null
	hack/tools.sh registry >/dev/null
	hack/tools.sh chart >/dev/null
	hack/tools.sh peers >/dev/null
	$(CARGO) test --workspace

fmt: ## Format the code
	$(CARGO) fmt --all

vet: ## Lints, warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: ## Deckhouse module checks: dmt (with and without MODULES_MODULE_TAG), helm render, dry run
	hack/lint.sh

demo: ## Local control plane + registry + operator, no cluster needed
	hack/demo.sh

bench: ## Benchmarks; regenerates BENCHMARKS.md
	hack/bench.sh

tools: ## Build (or reuse) the Go tools
	for t in controlplane registry chart lint; do hack/tools.sh $$t; done

clean:
	$(CARGO) clean
	rm -rf bin .demo
