//go:build tools

// Package tools pins the Deckhouse module lint tools `make lint` runs: helm renders the chart
// (hack/lint.sh, testenv/tests/chart_render.rs).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
