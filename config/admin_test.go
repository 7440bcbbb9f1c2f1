package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// admin.socket: a plain path of at most MaxSocketPath bytes, relative to
// the config file's folder, that is no other kind of file; served also
// with admin.listen "off", and what ReadAdmin gives ctl.
func TestAdminSocketKey(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	for _, c := range []struct{ socket, err string }{
		{"/run/stickylb/admin.sock", ""},
		{"admin.sock", ""},
		{"/run/" + strings.Repeat("x", 80) + ".sock", "a Unix socket's path takes at most 80"},
		{"/run/stickylb/", "names a folder"},
		{regular, "exists and is not a socket"},
	} {
		_, err := Parse(filepath.Join(dir, "lb.toml"), []byte("[admin]\nsocket = \""+c.socket+"\"\n"+minimal))
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("socket %q: %v, want %q", c.socket, err, c.err)
		}
	}
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte("[admin]\nlisten = \"off\"\nsocket = \"admin.sock\"\ntoken_file = \"admin.token\"\n"), 0o600)
	ac, err := ReadAdmin(path)
	if err != nil || ac.URL != "" || ac.Socket != filepath.Join(dir, "admin.sock") || ac.TokenFile != filepath.Join(dir, "admin.token") {
		t.Fatalf("ReadAdmin of a socket-only [admin]: %+v %v", ac, err)
	}
	os.WriteFile(path, []byte("[admin]\nlisten = \"off\"\n"), 0o600)
	if _, err := ReadAdmin(path); err == nil || !strings.Contains(err.Error(), "nothing to reach") {
		t.Fatalf("ReadAdmin with neither listen nor socket: %v", err)
	}
}
