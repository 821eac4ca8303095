//go:build tools

// Package tools pins the registry binary the tests, demo and bench run.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
