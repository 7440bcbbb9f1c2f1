//go:build linux

package lbtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// NeedImpacket skips the test where Debian's python3 has no impacket,
// the real DCE/RPC client the tests run (CI installs python3-impacket).
func NeedImpacket(t testing.TB) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import impacket").Run(); err != nil {
		t.Skipf("needs impacket for Debian's python3 (apt-get install python3-impacket): %v", err)
	}
}

// JSONLines runs cmd (a client that prints one JSON object per line,
// such as cmd/stickylb/testdata/rpcclient.py) and returns its lines,
// failing the test with cmd's stderr if it fails or a line is not JSON.
func JSONLines[T any](t testing.TB, cmd *exec.Cmd) []T {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args[0], err, stderr.String())
	}
	var lines []T
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %q: %v\n%s", cmd.Args[0], sc.Text(), err, stderr.String())
		}
		lines = append(lines, v)
	}
	return lines
}
