//go:build tools

// Package tools pins promtool, Prometheus' own rule checker: testenv/tests/chart_render.rs runs
// `promtool check rules` on the PrometheusRule the chart renders from monitoring/prometheus-rules.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
