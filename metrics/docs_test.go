//go:build linux

package metrics

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// descRecorder is a Registerer that keeps the name of every metric the
// registered collectors describe.
type descRecorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *descRecorder) Unregister(prometheus.Collector) bool { return true }

// docs/operations.md's metrics table lists every metric stickylb
// exports, and nothing it does not: the table cannot drift from the
// code again (stickylb_affinity_throttled_total was missing).
func TestOperationsDocListsEveryMetric(t *testing.T) {
	rec := &descRecorder{names: map[string]bool{}}
	New(rec, Build{Version: "v"})
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(stickylb_[a-z0-9_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	for _, name := range slices.Sorted(maps.Keys(rec.names)) {
		if !documented[name] {
			t.Errorf("%s is exported but not in docs/operations.md's metrics table", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		if !rec.names[name] {
			t.Errorf("docs/operations.md lists %s, which stickylb does not export", name)
		}
	}
	if len(rec.names) < 30 {
		t.Fatalf("only %d metrics described: the recorder misses collectors", len(rec.names))
	}
}
