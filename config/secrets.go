package config

import (
	"os"
	"os/user"
	"strconv"
)

// SecretWarnings lists the files holding secrets (the admin token, the
// cluster key) that a user other than their owner can read or write:
// whoever reads the token can drain every CAS, and whoever reads the key
// can join the cluster and rewrite its pins. They are warnings, not
// errors, so that a file made with the usual umask does not stop a
// restart; check prints them and run logs them at start. The package's
// own mode, root:stickylb 0640 (root writes it, the service's group
// reads it), is no warning: see serviceGroupReads.
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
		if err != nil || fi.Mode().Perm()&0o077 == 0 || serviceGroupReads(fi) {
			continue
		}
		v.errAt(f.key, "%s can be read or written by other users (mode %04o): chmod 600 %s, owned by the user stickylb runs as "+
			"(or chown root:stickylb and chmod 640, as the package makes it)", f.path, fi.Mode().Perm(), f.path)
	}
	return v.errs
}

// ServiceGroup is the group the package's service runs as: a secret
// owned by root and readable by this group alone is the package's own
// layout.
const ServiceGroup = "stickylb"

// serviceGroupReads says whether fi is a secret root owns and writes
// that only its group may also read, the group being the service's: the
// group of the process checking it (as the service, in ExecStartPre and
// at start) or the package's stickylb.
func serviceGroupReads(fi os.FileInfo) bool {
	uid, gid, ok := owner(fi)
	if !ok || uid != 0 || fi.Mode().Perm()&^0o640 != 0 {
		return false
	}
	if int(gid) == os.Getgid() {
		return true
	}
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
	return err == nil && g.Name == ServiceGroup
}
