//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line's contract: exit 2 and a message naming the mistake
// for a command used wrongly, shell completion for bash, zsh and fish,
// and a man page for every command.
func TestCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate" for "stickylb"`},
		{[]string{"check", "--nope"}, 2, "unknown flag: --nope (see stickylb check --help)"},
		{[]string{"ctl", "weight", "cas1"}, 2, "usage: stickylb ctl weight [POOL/]BACKEND N"},
		{[]string{"ctl", "--admin", "http://127.0.0.1:1", "weight", "cas1", "heavy"}, 2, `weight "heavy" is not a whole number`},
		{[]string{"ctl", "--admin", "http://127.0.0.1:1", "backends"}, 1, "cannot reach the admin API at http://127.0.0.1:1"},
		{[]string{"analyze"}, 2, "usage: stickylb analyze [flags] CAPTURE"},
		{[]string{"sim"}, 2, "stickylb sim [command]"},
		{[]string{"version"}, 0, "stickylb dev commit"},
		{[]string{"--version"}, 0, "stickylb dev commit"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.says) {
			t.Errorf("%v: exit %d, %q %q; want exit %d saying %q", c.args, code, out.String(), errb.String(), c.code, c.says)
		}
	}
	for shell, want := range map[string]string{"bash": "__start_stickylb", "zsh": "#compdef stickylb", "fish": "complete -c stickylb"} {
		var out, errb bytes.Buffer
		if code := run([]string{"completion", shell}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("completion %s: exit %d, lacks %q", shell, code, want)
		}
	}
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"man", "--config-doc", "../../docs/config.md", dir}, &out, &errb); code != 0 {
		t.Fatalf("man: exit %d %s", code, errb.String())
	}
	for _, page := range []string{"stickylb.8", "stickylb-run.8", "stickylb-ctl-drain.8", "stickylb-ctl-connections.8", "stickylb-sim-unity.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		title := strings.ToUpper(strings.TrimSuffix(page, ".8"))
		if err != nil || !bytes.Contains(b, []byte(".TH \""+title+"\" \"8\"")) {
			t.Errorf("man page %s: %v, %.80q; want it titled %s", page, err, b, title)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stickylb-ctl-drain.8")); !bytes.Contains(b, []byte("deadline")) {
		t.Errorf("stickylb-ctl-drain.8 does not document --deadline")
	}
}

// ctl passes the API's errors on with its own flags in place of the
// query parameters they name: "name a pool with --pool", not "?pool=".
func TestCtlFlagHints(t *testing.T) {
	got := flagHints("name a pool with ?pool= (pools: cas, owa); or give ?client=IP, ?backend=NAME or ?id=L/N")
	want := "name a pool with --pool (pools: cas, owa); or give --client IP, --backend NAME or --id L/N"
	if got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
