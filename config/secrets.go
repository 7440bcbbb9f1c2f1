package config

import (
	"os"
)

// SecretWarnings lists the files holding secrets (the admin token, the
// cluster key) that a user other than their owner can read or write:
// whoever reads the token can drain every CAS, and whoever reads the key
// can join the cluster and rewrite its pins. They are warnings, not
// errors, so that a file made with the usual umask does not stop a
// restart; check prints them and run logs them at start.
func (c *Config) SecretWarnings() []error {
	v := &checker{file: c.File, lines: c.lines}
	for _, f := range []struct{ key, path string }{
		{"admin.token_file", c.Admin.TokenFile},
		{"cluster.secret_file", c.Cluster.SecretFile},
	} {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		v.errAt(f.key, "%s can be read or written by other users (mode %04o): chmod 600 %s, owned by the user stickylb runs as",
			f.path, fi.Mode().Perm(), f.path)
	}
	return v.errs
}
