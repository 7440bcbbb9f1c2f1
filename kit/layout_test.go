package kit

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/stickylb/stickylb/"

// layers is the data flow of the runtime packages, lowest first: a
// package may import only packages of lower layers, and never the kit.
var layers = [][]string{
	{"dcerpc", "localerr", "locks", "throttle", "uplot"},
	{"config"},
	{"affinity", "health", "steer", "nlbimport"},
	{"pool", "persist", "event"},
	{"operator"},
	{"cluster", "proxy"},
	{"server"},
	{"metrics", "admin"},
	{"daemon", "admin/client"},
}

// Every runtime package has its place in layers: a new package that is
// not listed would escape the layering test.
func TestEveryPackageLayered(t *testing.T) {
	out, err := exec.Command("go", "list", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	listed := map[string]bool{}
	for _, l := range layers {
		for _, p := range l {
			listed[p] = true
		}
	}
	for _, imp := range strings.Fields(string(out)) {
		pkg, _ := strings.CutPrefix(imp, module)
		if strings.HasPrefix(pkg, "kit") || strings.HasPrefix(pkg, "cmd/") || listed[pkg] {
			continue
		}
		t.Errorf("package %s has no layer in kit/layout_test.go: add it where its imports put it", pkg)
	}
}

// Runtime packages import only lower layers and never the kit, so the
// balancer is readable, and buildable, without its tools.
func TestLayering(t *testing.T) {
	layer := map[string]int{}
	for i, l := range layers {
		for _, p := range l {
			layer[p] = i
		}
	}
	for pkg, at := range layer {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, imp := range strings.Fields(string(out)) {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if strings.HasPrefix(dep, "kit") {
				t.Errorf("runtime package %s imports the kit (%s)", pkg, dep)
				continue
			}
			l, known := layer[dep]
			if !known || l >= at {
				t.Errorf("%s (layer %d) imports %s (layer %d): data flows one way, %v", pkg, at, dep, l, layers)
			}
		}
	}
}

// docs/architecture.md's table of packages says what layers says: each
// runtime package, at its layer, and no package that does not exist.
func TestArchitectureDocMatchesLayers(t *testing.T) {
	b, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z/]+)` \\| (\\d+) \\|")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]], _ = strconv.Atoi(m[2])
	}
	for i, l := range layers {
		for _, p := range l {
			at, ok := documented[p]
			switch {
			case !ok:
				t.Errorf("docs/architecture.md does not list package %s (layer %d)", p, i)
			case at != i:
				t.Errorf("docs/architecture.md puts %s at layer %d; the layering test, at %d", p, at, i)
			}
			delete(documented, p)
		}
	}
	for p := range documented {
		t.Errorf("docs/architecture.md lists %s, which the layering test does not know", p)
	}
}
