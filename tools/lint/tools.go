//go:build tools

// Package tools pins helm, which renders the chart for `make lint` (hack/lint.sh) and
// testenv/tests/chart_render.rs.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
