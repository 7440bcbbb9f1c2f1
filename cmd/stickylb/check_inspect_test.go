//go:build linux

package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/config"
)

// check says what following the endpoint mapper needs, and warns of a
// listener on the same address that takes ports a CAS hands out.
func TestCheckSaysWhatFollowingNeeds(t *testing.T) {
	src := "[listener.epmap]\nlisten = \"127.0.0.1:10135\"\npool = \"cas\"\ninspect_dcerpc = true\n" +
		"[listener.rpc]\nlisten = \"127.0.0.1:60001\"\npool = \"cas\"\n" +
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.13\"\n"
	cfg, err := config.Parse("lb.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	summary(&out, cfg)
	if !strings.Contains(out.String(), "follows the endpoint mapper: each port a CAS hands out is opened on 127.0.0.1 on demand") ||
		!strings.Contains(out.String(), "no BPF") || !strings.Contains(out.String(), "2m0s after its last connection") {
		t.Fatalf("summary:\n%s", out.String())
	}
	_, ws := hostProblems(cfg, net.DefaultResolver)
	if len(ws) != 1 || !strings.Contains(ws[0], "lb.toml:4: listener.epmap.inspect_dcerpc: listener rpc takes port 60001") {
		t.Fatalf("warnings: %q", ws)
	}
}
