//go:build deadlock

package locks

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Under the deadlock tag, a goroutine that takes a lock it holds (the
// shape of issue 29's failed upgrade: Resume held the server's lock and
// the cluster's first message asked for it again) ends the process with
// go-deadlock's report, instead of hanging it. Run in a child process,
// since the detector exits.
func TestRelockFailsTheProcess(t *testing.T) {
	if os.Getenv("LOCKS_RELOCK") == "1" {
		var mu Mutex
		mu.Lock()
		mu.Lock()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRelockFailsTheProcess$")
	cmd.Env = append(os.Environ(), "LOCKS_RELOCK=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "Recursive locking") {
		t.Fatalf("a lock taken twice: %v\n%s", err, out)
	}
}
