//go:build linux

package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// example is a shell block of the docs marked to run: a fence opened
// with "```sh example".
type example struct {
	file string
	line int
	code string
}

func markedExamples(t *testing.T) []example {
	var out []example
	for file, text := range docFiles(t) {
		var cur *example
		indent := ""
		for n, line := range strings.Split(text, "\n") {
			switch {
			case cur == nil && strings.TrimSpace(line) == "```sh example":
				cur = &example{file: file, line: n + 1}
				indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
			case cur != nil && strings.HasPrefix(strings.TrimSpace(line), "```"):
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				// A block in a list item is indented: its heredocs end at
				// the item's indentation.
				cur.code += strings.TrimPrefix(line, indent) + "\n"
			}
		}
	}
	return out
}

// The shell examples the docs mark run as written, each in a fresh
// directory that looks like a clone of the repository (so go run
// ./cmd/stickylb and lb.toml work) with the built binary first on PATH,
// and each must exit 0; whatever a block starts in the background is
// stopped when it ends. An example that breaks fails here.
func TestDocExamples(t *testing.T) {
	examples := markedExamples(t)
	slices.SortFunc(examples, func(a, b example) int { return cmp.Or(strings.Compare(a.file, b.file), a.line-b.line) })
	if len(examples) < 5 {
		t.Fatalf("only %d marked examples found", len(examples))
	}
	if os.Geteuid() != 0 {
		t.Skip("the examples run in network namespaces of their own, which need root (CI runs as root)")
	}
	for _, ex := range examples {
		t.Run(fmt.Sprintf("%s:%d", ex.file, ex.line), func(t *testing.T) {
			dir := cloneLike(t)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			// In a network namespace of its own, so that no other test's
			// loopback traffic holds the example's ports (a TIME_WAIT
			// socket on 127.0.0.1:60002 from any earlier connection keeps
			// lb.toml's listener from binding), and none of its own
			// outlives it.
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", "ip link set lo up\n"+ex.code)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNET}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			// A file, not a pipe: what the block leaves running in the
			// background would hold a pipe open past the block's end.
			log, err := os.Create(filepath.Join(t.TempDir(), "output"))
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = log, log
			err = cmd.Run()
			stopGroup(t, cmd.Process.Pid)
			if err != nil {
				out, _ := os.ReadFile(log.Name())
				t.Fatalf("%s:%d: %v\n%s\n--- output:\n%s", ex.file, ex.line, err, ex.code, out)
			}
		})
	}
}

// cloneLike makes a directory with the repository's files linked in, but
// its own copy of lb.toml, so an example's pins, pid files and builds
// stay there.
func cloneLike(t *testing.T) string {
	dir := t.TempDir()
	entries, err := os.ReadDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		src, _ := filepath.Abs(filepath.Join("../..", e.Name()))
		if e.Name() == "lb.toml" || e.Name() == "stickylb" || strings.HasPrefix(e.Name(), "stickylb-pins") {
			continue
		}
		if err := os.Symlink(src, filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("../../lb.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lb.toml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// stopGroup kills what a block left running and waits until it is gone,
// so that the next block finds its ports free.
func stopGroup(t *testing.T, pgid int) {
	syscall.Kill(-pgid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still there 10s after SIGKILL", pgid)
		}
		time.Sleep(20 * time.Millisecond) // pacing a poll: the loop waits on the condition
	}
}
