//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// run --pidfile makes the pid file's folder when it is missing, as
// /run/stickylb is without systemd's RuntimeDirectory= (issue 35, point
// 4: it served, exited 1 with "cannot write the pid file" and logged a
// stop for signal=terminated that no one sent); where the folder cannot
// be made, it exits 1 before binding anything, naming the folder and the
// fix, and logs no stop.
func TestPidfileFolder(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	cfg := writeConfig(t, labConfig(ports, bs, ""))
	pidfile := filepath.Join(t.TempDir(), "run", "stickylb", "stickylb.pid")
	p := startBinary(t, nil, "run", "-c", cfg, "--pidfile", pidfile)
	lbtest.Eventually(t, 10*time.Second, "the pid file in a folder run made", func() bool {
		b, _ := os.ReadFile(pidfile)
		return strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid)
	})
	p.stop()
	if _, err := os.Stat(pidfile); err == nil {
		t.Fatal("the pid file is left after a stop")
	}

	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	cmd := exec.Command(binary, "run", "-c", cfg, "--pidfile", filepath.Join(file, "stickylb", "stickylb.pid"))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("run with a pid file's folder it cannot make did not exit:\n%s", out)
	}
	log := string(out)
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("run with a pid file's folder it cannot make: %v, want exit 1\n%s", err, log)
	}
	if !strings.Contains(log, "the pid file's folder "+filepath.Join(file, "stickylb")+" is not there and cannot be made") ||
		!strings.Contains(log, "install -d -o stickylb") || strings.Contains(log, "stopping") || strings.Contains(log, "msg=listening") {
		t.Fatalf("run's log names neither the folder nor the fix, or it bound and stopped:\n%s", log)
	}
}
