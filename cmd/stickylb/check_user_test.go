//go:build linux

package main

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// checkOut runs the built binary's check with args and returns its exit
// code and output.
func checkOut(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"check"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case !errors.As(err, &exit):
		t.Fatalf("check %v: %v", args, err)
	}
	return exit.ExitCode(), string(out)
}

// check --as-user judges the files as the service's user (issue 35,
// point 1): root passes a token only root can read, which the service
// cannot read, so `check --as-user nobody` fails on it as the service
// would; root:GROUP 0640, GROUP being the user's (the package's
// root:stickylb 0640), passes with no warning. Without --as-user root
// passes both.
func TestCheckAsServiceUser(t *testing.T) {
	asNobody(t) // root, and the binary readable by nobody
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	gid, _ := strconv.Atoi(nobody.Gid)
	path := publicConfig(t, "[admin]\nlisten = \"127.0.0.1:19090\"\ntoken_file = \"TOKEN\"\n"+
		"[listener.rpc]\nlisten = \"127.0.0.1:60135\"\npool = \"cas\"\n[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n")
	token := filepath.Join(filepath.Dir(path), "admin.token")
	src, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(src), "TOKEN", token, 1)), 0o644)
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := checkOut(t, "-c", path); code != 0 {
		t.Fatalf("check as root of a root 0600 token: exit %d\n%s", code, out)
	}
	code, out := checkOut(t, "--as-user", "nobody", "-c", path)
	if code != 1 || !strings.Contains(out, "admin.token_file: cannot read the token") || !strings.Contains(out, "permission denied") {
		t.Fatalf("check --as-user nobody of a root 0600 token: exit %d, want 1 naming the token\n%s", code, out)
	}
	if err := os.Chown(token, 0, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(token, 0o640)
	code, out = checkOut(t, "--as-user", "nobody", "-c", path)
	if code != 0 || !strings.Contains(out, ": OK") || strings.Contains(out, "other users") {
		t.Fatalf("check --as-user nobody of a root:%s 0640 token: exit %d, want 0 and no warning\n%s", nobody.Gid, code, out)
	}
	if code, out := checkOut(t, "--as-user", "no-such-user-35", "-c", path); code != 1 || !strings.Contains(out, "no-such-user-35") {
		t.Fatalf("check --as-user of a user that does not exist: exit %d\n%s", code, out)
	}
}

// check exits 1 when it knows start-up will fail (issue 35, point 2): a
// listener of the whole dynamic range as a user without CAP_BPF and
// CAP_NET_ADMIN, as the packaged unit's user is; with the capabilities a
// drop-in grants (--caps) the same file passes.
func TestCheckFailsWhenStartWould(t *testing.T) {
	asNobody(t)
	path := publicConfig(t, "[admin]\nlisten = \"off\"\n[listener.rpc]\nlisten = \"127.0.0.46:6005-59530\"\npool = \"cas\"\n"+
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.check.tcp]\nport = 135\n")
	code, out := checkOut(t, "--as-user", "nobody", "-c", path)
	if code != 1 || !strings.Contains(out, "start-up will fail") || !strings.Contains(out, "would not start on this host as user nobody") || strings.Contains(out, ": OK") {
		t.Fatalf("check --as-user nobody of a range it cannot take: exit %d, want 1\n%s", code, out)
	}
	code, out = checkOut(t, "--as-user", "nobody", "--caps", "CAP_NET_BIND_SERVICE,CAP_BPF,CAP_NET_ADMIN", "-c", path)
	if code != 0 || !strings.Contains(out, ": OK") {
		t.Fatalf("check --as-user nobody with CAP_BPF and CAP_NET_ADMIN: exit %d, want 0\n%s", code, out)
	}
	if code, out := checkOut(t, "--as-user", "nobody", "--caps", "CAP_SYS_ADMIN", "-c", path); code != 1 || !strings.Contains(out, "CAP_SYS_ADMIN is not one of") {
		t.Fatalf("check --caps CAP_SYS_ADMIN: exit %d\n%s", code, out)
	}
}
