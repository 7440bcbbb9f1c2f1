package config

import (
	"errors"
	"strings"
	"testing"
)

// clusterConfig is a file with a cluster, a pool and a backend named as
// given, the backend's table on line 9.
func clusterConfig(pool, backend, node string) string {
	return `[cluster]
bind = "127.0.0.1:7946"
node_name = "` + node + `"

[listener.epmap]
listen = "127.0.0.1:10135"
pool = "` + pool + `"

[pool."` + pool + `".backend."` + backend + `"]
address = "127.0.0.11"
`
}

// namesChecked parses src and runs the name check on it, as check does.
func namesChecked(t *testing.T, src string) []*Error {
	t.Helper()
	c, err := Parse("lb.toml", []byte(src))
	var errs []*Error
	if err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var ce *Error
			if errors.As(e, &ce) {
				errs = append(errs, ce)
			}
		}
		return errs
	}
	v := &checker{file: c.File, lines: c.lines}
	c.checkNames(v)
	for _, e := range v.errs {
		errs = append(errs, e.(*Error))
	}
	return errs
}

// With a cluster, a backend name the members' messages cannot carry (a
// 300-byte one made every peer refuse the whole batch) is refused with
// the file, its line and its key; so are a long pool name and node
// name, and a name that JSON makes too long. Names of MaxName bytes
// pass, and without a cluster any length does.
func TestNamesTheWireCannotCarryRefused(t *testing.T) {
	long := strings.Repeat("b", 300)
	cases := []struct {
		name, src, key string
		line           int
	}{
		{"300-byte backend", clusterConfig("cas", long, "lb1"), "pool.cas.backend." + long, 9},
		{"long pool", clusterConfig(strings.Repeat("p", 65), "cas1", "lb1"), "pool." + strings.Repeat("p", 65), 9},
		{"escaped backend", clusterConfig("cas", strings.Repeat("<", 20), "lb1"), "pool.cas.backend." + strings.Repeat("<", 20), 9},
		{"long node name", clusterConfig("cas", "cas1", strings.Repeat("n", 65)), "cluster.node_name", 3},
	}
	for _, tc := range cases {
		errs := namesChecked(t, tc.src)
		if len(errs) != 1 || errs[0].Key != tc.key || errs[0].Line != tc.line || errs[0].File != "lb.toml" {
			t.Errorf("%s: %v; want one error at lb.toml:%d, key %.40s", tc.name, errs, tc.line, tc.key)
		}
	}
	if errs := namesChecked(t, clusterConfig(strings.Repeat("p", MaxName), strings.Repeat("b", MaxName), strings.Repeat("n", MaxName))); len(errs) != 0 {
		t.Errorf("names of %d bytes refused: %v", MaxName, errs)
	}
	alone := strings.Replace(clusterConfig("cas", long, "lb1"), "[cluster]\nbind = \"127.0.0.1:7946\"\nnode_name = \"lb1\"\n", "", 1)
	if errs := namesChecked(t, alone); len(errs) != 0 {
		t.Errorf("a long name refused without a cluster: %v", errs)
	}
}
