package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// AdminClient is what a client on this host needs of a config's [admin]
// to reach its API; paths are resolved against the config file.
type AdminClient struct {
	// URL is the http or https address of admin.listen as a client on
	// this host dials it (a wildcard address becomes loopback); "" when
	// admin.listen is "off".
	URL string
	// Socket is admin.socket: "" without.
	Socket string
	// TokenFile and CertFile are admin.token_file and admin.tls_cert_file.
	TokenFile, CertFile string
}

// ReadAdmin reads only the [admin] table of the file at path, so that
// `stickylb ctl -c FILE` needs no other flag. The rest of the file is not
// checked: a reload must be able to say why a broken file is refused.
// The token file is not read: a client that reaches the socket needs no
// token.
func ReadAdmin(path string) (AdminClient, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return AdminClient{}, fmt.Errorf("read %s: %w", path, err)
	}
	a := Admin{Listen: DefaultAdminListen}
	if _, err := toml.Decode(adminTable(string(src)), &a); err != nil {
		return AdminClient{}, fmt.Errorf("read [admin] of %s: %w", path, err)
	}
	c := Config{File: path, Admin: a}
	c.resolvePaths()
	ac := AdminClient{Socket: c.Admin.Socket, TokenFile: c.Admin.TokenFile, CertFile: c.Admin.TLSCertFile}
	if a.Listen == "off" {
		if ac.Socket == "" {
			return ac, fmt.Errorf("%s turns the admin API off (admin.listen = \"off\", no admin.socket): nothing to reach", path)
		}
		return ac, nil
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return ac, fmt.Errorf("%s: admin.listen %q: %w", path, a.Listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	scheme := "http"
	if ac.CertFile != "" {
		scheme = "https"
	}
	ac.URL = scheme + "://" + net.JoinHostPort(host, port)
	return ac, nil
}

// ReadToken reads a bearer token file: its content, trimmed.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// adminTable is the body of the file's [admin] table alone, so that a
// mistake anywhere else (the one a reload is to report) does not stop
// ctl from finding the API.
func adminTable(src string) string {
	var b strings.Builder
	in := false
	for line := range strings.Lines(src) {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "[") {
			in = strings.HasPrefix(t, "[admin]")
			continue
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// MaxSocketPath bounds admin.socket: the kernel takes 107 bytes, and the
// socket is bound in a directory beside the path before it is renamed
// into place, a name of up to 20 bytes longer.
const MaxSocketPath = 80

// checkSocket checks admin.socket, which is served whether or not
// admin.listen is "off". Its folder is not checked: systemd makes
// /run/stickylb (RuntimeDirectory) only when the service starts.
func (a *Admin) checkSocket(v *checker) {
	switch p := a.Socket; {
	case p == "":
	case len(p) > MaxSocketPath:
		v.errAt("admin.socket", "%s is %d bytes long: a Unix socket's path takes at most %d here; choose a shorter one such as /run/stickylb/admin.sock",
			p, len(p), MaxSocketPath)
	case strings.HasSuffix(p, "/"):
		v.errAt("admin.socket", "%s names a folder: give the socket's file, such as /run/stickylb/admin.sock", p)
	default:
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket == 0 {
			v.errAt("admin.socket", "%s exists and is not a socket: remove it or choose another path", p)
		}
		if filepath.Clean(p) != p {
			v.errAt("admin.socket", "%s: write the path plainly (%s)", p, filepath.Clean(p))
		}
	}
}
