//go:build linux

package lbtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SmallDisk is a directory on a tmpfs of size bytes, for a full disk
// that must not fill the machine's own. The tmpfs is mounted in a mount
// namespace of its own, held by a sleeping child, so the machine's mount
// table never sees it; the test reaches it through the child's
// /proc/PID/root. Both go when the test ends. It skips the test, saying
// why, where mount namespaces cannot be made (not root).
func SmallDisk(t testing.TB, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a size-limited tmpfs in a mount namespace needs root (CI runs as root); this fault test is skipped")
	}
	dir := t.TempDir()
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Skipf("cannot make a mount namespace here (unshare: %v); this fault test is skipped", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	pid := holder.Process.Pid
	// unshare execs sleep once the namespace is made: wait for that.
	deadline := time.Now().Add(5 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare did not start sleep in 5s (exe %q)", exe)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mount := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-m", "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir)
	if out, err := mount.CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs in a mount namespace here (%v: %s); this fault test is skipped", err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", pid), dir)
}

// Fill writes zeros to a file in dir until its disk is full, and returns
// the file's path.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path, err := FillDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// FillDir is Fill for code without a testing.TB (the soak's faults): it
// returns what went wrong instead of failing a test.
func FillDir(dir string) (string, error) {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("fill %s: %w", dir, err)
	}
	defer f.Close()
	zeros := make([]byte, 4096)
	for i := 0; i < 1<<20; i++ {
		if _, err := f.Write(zeros); err != nil {
			return path, nil
		}
	}
	return path, fmt.Errorf("fill %s: not full after 4 GiB", dir)
}
