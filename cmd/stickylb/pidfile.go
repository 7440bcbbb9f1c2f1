//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// pidfileFolder makes the pid file's folder when it is not there, as
// systemd's RuntimeDirectory= does for the unit, and tests that this
// user may write in it, before anything is bound: run --pidfile
// /run/stickylb/stickylb.pid without systemd found no /run/stickylb,
// served, failed to write the file and then stopped (issue 35, point 4).
func pidfileFolder(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("the pid file's folder %s is not there and cannot be made: %w: make it (install -d -o stickylb %s) "+
			"or give --pidfile a folder this user may write", dir, err, dir)
	}
	f, err := os.CreateTemp(dir, ".stickylb-pid-*")
	if err != nil {
		return fmt.Errorf("the pid file's folder %s cannot be written by this user: %w: chown it to the user stickylb runs as, "+
			"or give --pidfile a folder this user may write", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
