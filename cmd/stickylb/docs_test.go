//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// docFiles are the pages a user reads: the README and docs/*.md.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, _ := filepath.Glob("../../docs/*.md")
	paths = append(paths, "../../README.md")
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(p, "../../")] = string(b)
	}
	return out
}

// codeLines lists the commands in a page with each one's line number:
// every line of a shell block (a fence marked sh), the lines of another
// block that start with a "$ " prompt (the rest is output), and every
// inline code span elsewhere.
func codeLines(text string) (lines []string, numbers []int) {
	fence := ""
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		shell := strings.HasPrefix(fence, "```sh")
		switch {
		case strings.HasPrefix(trimmed, "```"):
			if fence == "" {
				fence = trimmed
			} else {
				fence = ""
			}
		case fence != "" && !shell && !strings.HasPrefix(trimmed, "$ "):
		case fence != "" && len(lines) > 0 && strings.HasSuffix(lines[len(lines)-1], "\\"):
			// A continued command line reads as one.
			code, _, _ := strings.Cut(line, "#")
			lines[len(lines)-1] = strings.TrimSuffix(lines[len(lines)-1], "\\") + code
		case fence != "":
			code, _, _ := strings.Cut(line, "#")
			lines, numbers = append(lines, strings.TrimRight(code, " ")), append(numbers, n+1)
		default:
			for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
				lines, numbers = append(lines, m[1]), append(numbers, n+1)
			}
		}
	}
	return lines, numbers
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

// invocation matches a command line in code: the binary (installed,
// built in place or through go run) where a command starts, and what
// follows up to a pipe, a redirection or a shell operator.
var invocation = regexp.MustCompile(`(?:^\s*|\$ |&& |; |\$\()(?:\./|go run \./cmd/|/usr/bin/)?stickylb((?: +[^\s|;&)<>]+)*)`)

// Every command line the docs show names commands and flags that exist:
// "stickylb ctl frobnicate" or "stickylb run --nope" in a doc fails here.
// Each subcommand and flag the program has appears in the docs, so none
// is left for users to find in --help alone.
func TestDocsNameRealCommandsAndFlags(t *testing.T) {
	root := rootCommand(io.Discard, io.Discard)
	seenCmd, seenFlag := map[string]bool{}, map[string]bool{}
	for file, text := range docFiles(t) {
		lines, numbers := codeLines(text)
		for i, line := range lines {
			n := numbers[i] - 1
			for _, m := range invocation.FindAllStringSubmatch(line, -1) {
				cmd, flags, err := resolve(root, strings.Fields(m[1]))
				if err != "" {
					t.Errorf("%s:%d: %s (in %q)", file, n+1, err, strings.TrimSpace(m[0]))
					continue
				}
				// A flag counts for the command and its parents, where a
				// persistent flag (ctl's --admin) is defined.
				for c := cmd; c != nil; c = c.Parent() {
					seenCmd[c.CommandPath()] = true
					for _, f := range flags {
						seenFlag[c.CommandPath()+" --"+f] = true
					}
				}
			}
		}
	}
	for _, c := range allCommands(root) {
		if !seenCmd[c.CommandPath()] {
			t.Errorf("%s is in no doc (README.md, docs/*.md)", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Name != "help" && !seenFlag[c.CommandPath()+" --"+f.Name] {
				t.Errorf("%s --%s is shown in no doc", c.CommandPath(), f.Name)
			}
		})
	}
	if len(seenCmd) < 20 {
		t.Fatalf("only %d commands found in the docs: the pattern misses them", len(seenCmd))
	}
}

// resolve walks words down the command tree: a word naming no subcommand
// of a command that only groups others (ctl, sim, bench) is an error, and
// so is a flag the command it follows lacks.
func resolve(root *cobra.Command, words []string) (*cobra.Command, []string, string) {
	cmd := root
	var flags []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") && len(w) > 1 {
			f := lookupFlag(cmd, w)
			if f == nil {
				return nil, nil, cmd.CommandPath() + " has no flag " + w
			}
			flags = append(flags, f.Name)
			if f.NoOptDefVal == "" && !strings.Contains(w, "=") {
				i++ // its value
			}
			continue
		}
		if !cmd.HasSubCommands() {
			continue
		}
		sub := slices.IndexFunc(cmd.Commands(), func(c *cobra.Command) bool { return c.Name() == w || c.HasAlias(w) })
		if sub < 0 {
			return nil, nil, cmd.CommandPath() + " has no subcommand " + w
		}
		cmd = cmd.Commands()[sub]
	}
	return cmd, flags, ""
}

// lookupFlag finds the flag a word such as --name, --name=v or -c names.
func lookupFlag(cmd *cobra.Command, w string) *pflag.Flag {
	if name, ok := strings.CutPrefix(w, "--"); ok {
		name, _, _ = strings.Cut(name, "=")
		if name == "help" {
			return &pflag.Flag{Name: name}
		}
		for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags(), cmd.InheritedFlags()} {
			if f := fs.Lookup(name); f != nil {
				return f
			}
		}
		return nil
	}
	if len(w) != 2 {
		return nil
	}
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags(), cmd.InheritedFlags()} {
		if f := fs.ShorthandLookup(w[1:]); f != nil {
			return f
		}
	}
	return nil
}

// allCommands lists the commands a user is meant to run: not the hidden
// ones, help or shell completion.
func allCommands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		out = append(out, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return out
}

// The README's example log lines have the keys stickylb writes, both
// ways: every key of a "connection closed" and a "connection refused"
// line read from a running stickylb (JSON logs) is in the README's
// example of that line or among the keys it names as occasional, and
// every key of the examples is written.
func TestReadmeLogLinesMatchTheLogs(t *testing.T) {
	readme := docFiles(t)["README.md"]
	occasional := regexp.MustCompile("also has `([a-z_]+)` and `([a-z_]+)`").FindStringSubmatch(readme)
	if occasional == nil {
		t.Fatal("README.md no longer names the occasional keys (\"also has `repin_reason` and `error`\")")
	}
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	p := startBinary(t, nil, "run", "--log-format", "json", "-c", writeConfig(t, labConfig(ports, bs, "enabled = false\n")))
	addr := netip.MustParseAddrPort(jsonLogValue(t, p, "listening", "addr"))
	if _, err := lbtest.Who("127.6.2.1", addr); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "--admin", "http://" + jsonLogValue(t, p, "admin listening", "addr"), "maint", "cas1"}, &out, &errb); code != 0 {
		t.Fatalf("ctl maint: %s", errb.String())
	}
	lbtest.Who("127.6.2.2", addr) // refused: the only backend is in maintenance
	for _, msg := range []string{"connection closed", "connection refused"} {
		example := regexp.MustCompile(`(?m)^level=\w+ msg="` + msg + `" (.*)$`).FindStringSubmatch(readme)
		if example == nil {
			t.Errorf("README.md has no example %q line", msg)
			continue
		}
		documented := map[string]bool{occasional[1]: true, occasional[2]: true}
		for _, kv := range regexp.MustCompile(`(\w+)=`).FindAllStringSubmatch(example[1], -1) {
			documented[kv[1]] = true
		}
		written := logLineKeys(t, p, msg)
		for k := range written {
			if !documented[k] {
				t.Errorf("a %q line has %s, which README.md's example lacks", msg, k)
			}
		}
		for _, kv := range regexp.MustCompile(`(\w+)=`).FindAllStringSubmatch(example[1], -1) {
			if !written[kv[1]] {
				t.Errorf("README.md's %q example has %s, which stickylb does not write", msg, kv[1])
			}
		}
	}
}

// logLineKeys waits for the JSON log line with message msg and returns
// its keys but time, level and msg.
func logLineKeys(t *testing.T, p *proc, msg string) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	lbtest.Eventually(t, 10*time.Second, "the "+msg+" line", func() bool {
		for line := range strings.Lines(p.logs()) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
				for k := range m {
					keys[k] = true
				}
				delete(keys, "time")
				delete(keys, "level")
				delete(keys, "msg")
				return true
			}
		}
		return false
	})
	return keys
}

// Every fuzz target is in docs/reliability.md's table (as package.Name)
// and in .ci/run's list, which fuzzes each beyond its seeds.
func TestEveryFuzzTargetListed(t *testing.T) {
	doc := docFiles(t)["docs/reliability.md"]
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	err = filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := strings.TrimPrefix(filepath.Dir(path), "../../")
		for _, m := range regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`).FindAllStringSubmatch(string(b), -1) {
			found++
			if !strings.Contains(doc, "`"+filepath.Base(dir)+"."+m[1]+"`") {
				t.Errorf("docs/reliability.md's fuzz table lacks %s.%s", filepath.Base(dir), m[1])
			}
			if !strings.Contains(string(ci), dir+":"+m[1]+":") {
				t.Errorf(".ci/run does not fuzz %s:%s", dir, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 10 {
		t.Fatalf("only %d fuzz targets found", found)
	}
}

// The ratios docs/benchmarks.md quotes from a side-by-side run are lines
// of docs/compare.md, which scripts/compare.sh writes: a figure edited by
// hand, or left behind by a new run, fails here.
func TestBenchmarksQuoteCompare(t *testing.T) {
	docs := docFiles(t)
	compare := docs["docs/compare.md"]
	quoted := 0
	for line := range strings.Lines(docs["docs/benchmarks.md"]) {
		if strings.HasPrefix(line, "stickylb / ") || strings.HasPrefix(line, "stickylb - ") {
			quoted++
			if !strings.Contains(compare, line) {
				t.Errorf("docs/benchmarks.md quotes %q, which docs/compare.md (the latest compare.sh run) lacks", strings.TrimSpace(line))
			}
		}
	}
	if quoted == 0 {
		t.Fatal("docs/benchmarks.md quotes no ratio from docs/compare.md")
	}
}
