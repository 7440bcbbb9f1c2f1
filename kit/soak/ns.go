//go:build linux

package soak

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// The partition and full-disk faults need a network and a mount
// namespace: the partition is a set of routing rules, the full disk a
// small tmpfs per member, and neither may touch the machine. Rather than
// a namespace per member (the fleet's 127.2.x.y sources cannot cross a
// veth), the whole test binary runs again inside one pair of namespaces
// it made itself; every process of the rig inherits them, and they
// vanish with it.

// envIsolated marks the test binary run again inside its namespaces.
const envIsolated = "STICKYLB_SOAK_ISOLATED"

// Isolate runs this binary again, with the same arguments, in a new
// network and mount namespace, and returns its exit code and true. It
// returns false, with why, when this is already that run (why is then
// "") or when namespaces cannot be made here (not root): the caller goes
// on in the machine's namespaces, without the faults that need them.
func Isolate() (code int, ran bool, why string) {
	if os.Getenv(envIsolated) != "" {
		return 0, false, ""
	}
	if os.Geteuid() != 0 {
		return 0, false, "not root: no network or mount namespace, so no partition or full-disk fault (CI runs as root)"
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envIsolated+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, true, ""
	case errors.As(err, &exit):
		return exit.ExitCode(), true, ""
	}
	return 0, false, fmt.Sprintf("cannot make a network and mount namespace here (%v), so no partition or full-disk fault", err)
}

// Isolated says whether this process runs in the namespaces Isolate
// made, and readies them the first time: mounts private (a tmpfs made
// here stays here), loopback up, and the local routing table's rule
// moved behind the partition's (rules before it can refuse loopback
// traffic). why says what is missing when not.
func Isolated() (ok bool, why string) {
	if os.Getenv(envIsolated) == "" {
		return false, "not in namespaces of the soak's own"
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return false, fmt.Sprintf("make mounts private: %v", err)
	}
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"rule", "add", "pref", "100", "lookup", "local"}, {"rule", "del", "pref", "0"}} {
		if err := ip(args...); err != nil {
			return false, err.Error()
		}
	}
	return true, ""
}

// ip runs the ip command (iproute2).
func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
