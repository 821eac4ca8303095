//go:build tools

// Package tools pins the peer tools `make bench` compares registry-operator with:
// crane (go-containerregistry) and regctl (regclient).
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/regclient/regclient/cmd/regctl"
)
