package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docSections maps each heading of docs/config.md that holds a key table
// to the type whose toml keys it documents. A struct-typed field (a
// sub-table such as [pool.NAME.affinity]) is documented under its own
// heading, not in its parent's table.
var docSections = map[string]reflect.Type{
	"[global]":                 reflect.TypeFor[Global](),
	"[admin]":                  reflect.TypeFor[Admin](),
	"[cluster]":                reflect.TypeFor[Cluster](),
	"[listener.NAME]":          reflect.TypeFor[Listener](),
	"[pool.NAME]":              reflect.TypeFor[Pool](),
	"[pool.NAME.affinity]":     reflect.TypeFor[Affinity](),
	"[pool.NAME.limits]":       reflect.TypeFor[Limits](),
	"[pool.NAME.outlier]":      reflect.TypeFor[Outlier](),
	"[pool.NAME.health]":       reflect.TypeFor[Health](),
	"[pool.NAME.check.NAME]":   reflect.TypeFor[Check](),
	"[pool.NAME.backend.NAME]": reflect.TypeFor[Backend](),
}

// tomlKeys lists the keys a table of type t takes.
func tomlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" || isSubTable(f.Type) {
			continue
		}
		keys = append(keys, tag)
	}
	return keys
}

func isSubTable(t reflect.Type) bool {
	for _, typ := range docSections {
		if t == typ {
			return true
		}
	}
	return false
}

// documentedKeys reads docs/config.md's key tables: heading -> keys named
// in the first column of the table under it.
func documentedKeys(t *testing.T) map[string][]string {
	b, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^## `(\\[[^]]+\\])`")
	row := regexp.MustCompile("^\\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \\|")
	out := map[string][]string{}
	section := ""
	for line := range strings.Lines(string(b)) {
		if m := heading.FindStringSubmatch(line); m != nil {
			section = m[1]
		} else if strings.HasPrefix(line, "## ") {
			section = ""
		}
		if m := row.FindStringSubmatch(line); m != nil && section != "" {
			for k := range strings.SplitSeq(m[1], ", ") {
				out[section] = append(out[section], strings.Trim(k, "`"))
			}
		}
	}
	return out
}

// docs/config.md documents every key the decoder takes, each in its
// table's section, and no key the decoder refuses: a key added to the
// code without its doc row, or a doc row for a key renamed or removed,
// fails here.
func TestConfigDocListsEveryKey(t *testing.T) {
	docs := documentedKeys(t)
	for section, typ := range docSections {
		code := tomlKeys(typ)
		for _, k := range code {
			if !slices.Contains(docs[section], k) {
				t.Errorf("docs/config.md's %s table lacks %s", section, k)
			}
		}
		for _, k := range docs[section] {
			if !slices.Contains(code, k) {
				t.Errorf("docs/config.md's %s table documents %s, which the decoder refuses", section, k)
			}
		}
	}
	for section := range docs {
		if docSections[section] == nil {
			t.Errorf("docs/config.md has a key table under %s, which this test does not know", section)
		}
	}
	if n := len(tomlKeys(reflect.TypeFor[Pool]())); n < 10 {
		t.Fatalf("only %d pool keys found: tomlKeys misses fields", n)
	}
}

// The example lb.toml names every key, set or in a comment, as
// docs/config.md promises ("The example lb.toml uses every key").
func TestExampleConfigNamesEveryKey(t *testing.T) {
	b, err := os.ReadFile("../lb.toml")
	if err != nil {
		t.Fatal(err)
	}
	for section, typ := range docSections {
		for _, k := range tomlKeys(typ) {
			named := regexp.MustCompile(`(?m)^[#\s]*` + k + `\s*=`)
			if !named.Match(b) {
				t.Errorf("lb.toml does not name %s (%s)", k, section)
			}
		}
	}
}
