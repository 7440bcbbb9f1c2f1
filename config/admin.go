package config

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// AdminURL reads only the [admin] table of the file at path and returns
// the URL a client on this host reaches the admin API at, its token and
// its certificate file ("" for plain HTTP), so that `stickylb ctl -c
// FILE` needs no other flag. The rest of the file is not checked: a
// reload must be able to say why a broken file is refused.
func AdminURL(path string) (url, token, certFile string, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", "", "", fmt.Errorf("read %s: %w", path, err)
	}
	a := Admin{Listen: DefaultAdminListen}
	if _, err := toml.Decode(adminTable(string(src)), &a); err != nil {
		return "", "", "", fmt.Errorf("read [admin] of %s: %w", path, err)
	}
	if a.Listen == "off" {
		return "", "", "", fmt.Errorf("%s turns the admin API off (admin.listen = \"off\"): nothing to reach", path)
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return "", "", "", fmt.Errorf("%s: admin.listen %q: %w", path, a.Listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	c := Config{File: path, Admin: a}
	c.resolvePaths()
	scheme := "http"
	if c.Admin.TLSCertFile != "" {
		scheme, certFile = "https", c.Admin.TLSCertFile
	}
	if c.Admin.TokenFile != "" {
		if token, err = ReadToken(c.Admin.TokenFile); err != nil {
			return "", "", "", fmt.Errorf("admin token of %s: %w", path, err)
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), token, certFile, nil
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
