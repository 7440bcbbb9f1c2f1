//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkAsUser re-runs check as the user name (check --as-user), so that
// every file, folder and capability is judged as the service will meet
// them: the token and the config through that user's groups, the
// snapshot's folder, a range listener's CAP_BPF. Root asked to check as
// stickylb otherwise passes a token file only root can read, which the
// service then fails on. It has the capabilities caps names (the unit's
// AmbientCapabilities=) and no others. done is false when there is
// nothing to re-run: no --as-user, or this process is that user already
// (ExecStartPre runs as User=).
func checkAsUser(name, caps, path string, stdout, stderr io.Writer) (code int, done bool) {
	cmd, err := asUserCommand(name, caps, path)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "error:", err)
		return 1, true
	case cmd == nil:
		return 0, false
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	var exit *exec.ExitError
	switch err := cmd.Run(); {
	case err == nil:
		return 0, true
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode(), true
	default:
		fmt.Fprintf(stderr, "error: --as-user %s: run check as %s: %v\n", name, name, err)
		return 1, true
	}
}

// asUserCommand is check re-run as the user name with the capabilities
// caps, or nil when this process is that user already or none is named.
func asUserCommand(name, caps, path string) (*exec.Cmd, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("--as-user %s: %w (the package's postinstall makes the user stickylb)", name, err)
	}
	cred, err := credential(u)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--as-user %s: %w", name, err)
	case int(cred.Uid) == os.Getuid():
		return nil, nil
	case os.Geteuid() != 0:
		return nil, fmt.Errorf("--as-user %s: only root may check as another user: run check as root, or as %s", name, name)
	}
	ambient, err := parseCaps(caps)
	if err != nil {
		return nil, fmt.Errorf("--caps %q: %w", caps, err)
	}
	self, err := os.Executable()
	if err == nil {
		path, err = filepath.Abs(path)
	}
	if err != nil {
		return nil, fmt.Errorf("--as-user %s: %w", name, err)
	}
	cmd := exec.Command(self, "check", "-c", path, "--as-user", name)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, AmbientCaps: ambient}
	return cmd, nil
}

// credential is u's user, group and supplementary groups, as systemd
// gives the service with User= and Group=.
func credential(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user id %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("group id %q: %w", u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("the groups of %s: %w", u.Username, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(g))
		}
	}
	return cred, nil
}

// capsByName are the capabilities a unit of stickylb's may grant
// (docs/deploy.md): ports below 1024, transparent mode and sk_lookup.
var capsByName = map[string]uintptr{
	"NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"NET_ADMIN":        unix.CAP_NET_ADMIN,
	"NET_RAW":          unix.CAP_NET_RAW,
	"BPF":              unix.CAP_BPF,
}

// parseCaps reads a list such as "CAP_NET_BIND_SERVICE CAP_BPF" (spaces
// or commas, as AmbientCapabilities= takes them; "" for none).
func parseCaps(list string) ([]uintptr, error) {
	var out []uintptr
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		c, ok := capsByName[strings.TrimPrefix(strings.ToUpper(f), "CAP_")]
		if !ok {
			return nil, fmt.Errorf("%s is not one of CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF", f)
		}
		out = append(out, c)
	}
	return out, nil
}

// whoAmI names the user this process runs as, for check's verdict.
func whoAmI() string {
	if u, err := user.Current(); err == nil {
		return "user " + u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
