package admin

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// docs/operations.md's API reference lists every route the admin API
// serves and no route it does not: an endpoint added without its row, or
// a row left behind by a renamed endpoint, fails here. The dashboard's
// own assets (/static/) are not part of the API.
func TestOperationsDocListsEveryRoute(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `((?:GET|POST|DELETE|PUT) /[^`?]*)").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	a := &API{opts: Options{Gatherer: prometheus.NewRegistry()}}
	served := map[string]bool{}
	for _, r := range a.routes() {
		p := strings.TrimSuffix(r.pattern, "{$}")
		if !strings.HasPrefix(p, "GET /static/") {
			served[p] = true
		}
	}
	for _, p := range slices.Sorted(maps.Keys(served)) {
		if !documented[p] {
			t.Errorf("the API serves %s, which docs/operations.md's API reference lacks", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(documented)) {
		if !served[p] {
			t.Errorf("docs/operations.md documents %s, which the API does not serve", p)
		}
	}
	if len(served) < 15 {
		t.Fatalf("only %d routes: the list misses some", len(served))
	}
}
