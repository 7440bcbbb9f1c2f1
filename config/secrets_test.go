package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token or key file others can read is a warning naming the file, its
// mode and the fix; at 0600 it is not. The token is read once, when the
// config is checked: a file made unreadable afterwards cannot leave the
// API without it (run used to read it again, and took an unreadable file
// for no token).
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n" + minimal
	path := filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := c.SecretWarnings()
	if len(w) != 1 || !strings.Contains(w[0].Error(), "lb.toml:3: admin.token_file: "+token+" can be read or written by other users (mode 0644): chmod 600") {
		t.Fatalf("warnings for a 0644 token: %v", w)
	}
	os.Chmod(token, 0o600)
	if w := c.SecretWarnings(); len(w) != 0 {
		t.Fatalf("warnings for a 0600 token: %v", w)
	}
	os.Remove(token)
	if c.Admin.Token != "0123456789abcdef0123" {
		t.Fatalf("the token as checked is %q", c.Admin.Token)
	}
}

// A transparent pool of IPv4 CAS hosts behind a listener that takes IPv6
// clients ([::], an IPv6 address or PROXY headers) is a warning at the
// listener; behind an IPv4 listener it is not.
func TestTransparentFamilyWarning(t *testing.T) {
	for listen, want := range map[string]bool{"[::]:135": true, "[2001:db8::1]:135": true, "0.0.0.0:135": false, "10.0.0.5:135": false} {
		src := "[listener.l]\nlisten = \"" + listen + "\"\npool = \"t\"\n[pool.t]\ntransparent = true\n[pool.t.backend.a]\naddress = \"10.0.0.11\"\n"
		c, err := Parse("f.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, w := range c.Warnings() {
			got = got || strings.Contains(w.Error(), "f.toml:2: listener.l.listen: pool t is transparent and has no IPv6 backend")
		}
		if got != want {
			t.Errorf("listen %s: family warning %v, want %v (%v)", listen, got, want, c.Warnings())
		}
	}
}

// The package's layout of a secret, root:stickylb 0640 (root writes it,
// the service reads it through its group), is no warning when the group
// is the service's: the group of the process checking (the service, in
// ExecStartPre) or the one named stickylb. The same mode with another
// group, or with the group allowed to write, still is. Before, any group
// bit was a warning, so the package's own token warned (issue 35).
func TestSecretReadableByServiceGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give the file to root and another group")
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o640)
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n"+minimal), 0o644)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gid  int
		mode os.FileMode
		warn bool
	}{
		{os.Getgid(), 0o640, false},
		{os.Getgid(), 0o440, false},
		{os.Getgid(), 0o660, true},
		{os.Getgid(), 0o644, true},
		{65534, 0o640, true}, // nogroup: not the service's
	} {
		if err := os.Chown(token, 0, tc.gid); err != nil {
			t.Fatal(err)
		}
		os.Chmod(token, tc.mode)
		if w := c.SecretWarnings(); (len(w) > 0) != tc.warn {
			t.Errorf("root:%d %04o: warnings %v, want a warning %v", tc.gid, tc.mode, w, tc.warn)
		}
	}
}
