//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The man pages: each command's titled by its own name, stickylb(8) with
// FILES, SIGNALS, EXIT STATUS and EXAMPLES, lb.toml(5) made from
// docs/config.md, no PowerShell completion page; groff renders each
// without a warning where it is installed.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"man", "--config-doc", "../../docs/config.md", dir}, &out, &errb); code != 0 {
		t.Fatalf("man: %d %s", code, errb.String())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	root := read("stickylb.8")
	for _, want := range []string{`.TH "STICKYLB" "8"`, ".SH FILES", ".SH SIGNALS", ".SH EXIT STATUS", ".SH EXAMPLES", "/etc/stickylb/lb.toml"} {
		if !strings.Contains(root, want) {
			t.Errorf("stickylb.8 lacks %q", want)
		}
	}
	if !strings.Contains(read("stickylb-ctl-drain.8"), `.TH "STICKYLB-CTL-DRAIN" "8"`) {
		t.Error("stickylb-ctl-drain.8 is not titled by its command")
	}
	if page := read("lb.toml.5"); !strings.Contains(page, ".TH LB.TOML 5") || !strings.Contains(page, "snapshot_file") || !strings.Contains(page, "range_mode") {
		t.Errorf("lb.toml.5 is not the configuration reference:\n%.500s", page)
	}
	if _, err := os.Stat(filepath.Join(dir, "stickylb-completion-powershell.8")); err == nil {
		t.Error("a PowerShell completion page")
	}
	if _, err := exec.LookPath("groff"); err != nil {
		return
	}
	for _, name := range []string{"stickylb.8", "stickylb-run.8", "lb.toml.5"} {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", filepath.Join(dir, name))
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = nil, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("groff %s: %v %s", name, err, stderr.String())
		}
	}
}

// A folder that does not exist yet is made, parents and all, as
// install -d would (it failed with "open DIR/stickylb-analyze.8: no such
// file or directory").
func TestManMakesItsFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "share", "man", "man8")
	var out, errb bytes.Buffer
	if code := run([]string{"man", "--config-doc", "../../docs/config.md", dir}, &out, &errb); code != 0 {
		t.Fatalf("man into a new folder: %d %s", code, errb.String())
	}
	for _, name := range []string{"stickylb.8", "stickylb-analyze.8", "lb.toml.5"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}
