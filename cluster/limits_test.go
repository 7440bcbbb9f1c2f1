package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/operator"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// A record naming a backend longer than the wire carries is left out of
// its batch, counted and logged; the batch's other records still reach
// every member. Before, the one name made every peer refuse the whole
// batch ("malformed: header").
func TestLongNameLeavesBatchReadable(t *testing.T) {
	nodes := startNodes(t, 2, 1000)
	now := time.Now()
	long := strings.Repeat("b", 300)
	rec := func(i int, backend string) entry {
		return entry{pool: "cas", rec: affinity.Record{Key: clientKey(i), Backend: backend, Version: affinity.StampOf(now), Created: now.Unix()}}
	}
	nodes[0].m.send([]entry{rec(1, long), rec(2, "cas2")})
	lbtest.Eventually(t, 5*time.Second, "the batch's other pin at n2", func() bool {
		in, _ := nodes[1].table.Lookup(clientKey(2))
		return in.Backend == "cas2"
	})
	if n := nodes[1].m.stats.Malformed.Load(); n != 0 {
		t.Fatalf("n2 refused %d messages", n)
	}
	if n := nodes[0].m.stats.LeftOut.Load(); n != 1 {
		t.Fatalf("n1 counted %d records left out, want 1", n)
	}
}

// memberWithLog is a member with no network, as FuzzReceive's, whose log
// is kept.
func memberWithLog(logs *lbtest.Buffer, ops []operator.Decision, backends []string) *Member {
	tb := affinity.NewTable(affinity.Config{MaxEntries: 64})
	return &Member{log: slog.New(slog.NewTextHandler(logs, nil)), self: "me", opts: Options{
		Pins:      latest(affinity.Pins{Name: "cas", Table: tb, Backends: backends}),
		Decisions: decisionsOf(ops),
	}}
}

// An operator's decision whose JSON is longer than the wire carries is
// counted and logged when a whole table leaves it out, where before it
// was left out without a word; the other decisions go.
func TestLongDecisionCounted(t *testing.T) {
	var logs lbtest.Buffer
	ops := []operator.Decision{
		{Pool: "cas", Backend: "cas1", State: pool.Drain, Weight: -1, Version: 7},
		{Pool: "cas", Backend: strings.Repeat("b", 250), State: pool.Maint, Weight: -1, Version: 8},
	}
	m := memberWithLog(&logs, ops, nil)
	_, h, _, err := decode((*delegate)(m).LocalState(false), maxTable(64))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.ops) != 1 || h.ops[0].Backend != "cas1" {
		t.Fatalf("decisions sent: %+v; want cas1's alone", h.ops)
	}
	if n := m.stats.LeftOut.Load(); n != 1 {
		t.Fatalf("%d left out counted, want 1", n)
	}
	if !strings.Contains(logs.String(), "left out") {
		t.Fatalf("no log line says a decision was left out:\n%s", logs.String())
	}
}

// What a member publishes of its backends is all of them or nothing:
// with more than its metadata holds, a list cut short made the others
// take the backends past the cut for ones it lacks, and those took no
// new clients anywhere. Decisions, which only ctl shows, give way first,
// and whatever is left out is counted.
func TestViewsNeverClaimALack(t *testing.T) {
	var ops []operator.Decision
	for i := range 20 {
		ops = append(ops, operator.Decision{Pool: "cas", Backend: fmt.Sprintf("cas%d", i), State: pool.Drain, Weight: -1, Version: uint64(i + 1)})
	}
	for _, n := range []int{50, 120, 200} {
		var backends []string
		for i := range n {
			backends = append(backends, fmt.Sprintf("cas%d", i))
		}
		var logs lbtest.Buffer
		m := memberWithLog(&logs, ops, backends)
		v := decodeViews((*delegate)(m).NodeMeta(512))
		for _, b := range backends {
			if v.backends != nil && !v.backends[decisionID("cas", b)] {
				t.Fatalf("%d backends: the metadata says this member lacks %s", n, b)
			}
		}
		if published := len(v.decisions) + len(v.backends); published < len(ops)+n && m.stats.LeftOut.Load() == 0 {
			t.Fatalf("%d backends: %d of %d decisions and backends published, none counted left out", n, published, len(ops)+n)
		}
	}
}

// encode leaves out exactly the texts a string table entry cannot hold
// and the records that name one, and what it makes decodes.
func TestEncodeLeavesOutOnlyWhatDoesNotFit(t *testing.T) {
	long := strings.Repeat("x", 300)
	good := sampleEntries()[0]
	longPool, longHome := good, sampleEntries()[1]
	longPool.pool, longHome.rec.Home = long, long
	h := header{sent: 1_700_000_500, from: long,
		ops: []operator.Decision{
			{Pool: "cas", Backend: "cas1", State: pool.Drain, Weight: -1, Version: 7},
			{Pool: "cas", Backend: long, State: pool.Maint, Weight: -1, Version: 8},
		},
		closes: []CloseRequest{{Pool: "cas", Backend: long}, {Pool: "cas", Client: "10.1.2.3"}},
	}
	for _, kind := range []byte{kindChanges, kindTable} {
		msg, out := encode(kind, h, []entry{longPool, good, longHome})
		if want := (leftOut{sender: true, decisions: 1, closes: 1, records: 2, example: senderMark + long}); out != want {
			t.Fatalf("kind %c: left out %+v, want %+v", kind, out, want)
		}
		_, got, es, err := decode(msg, maxTable(1000))
		if err != nil {
			t.Fatalf("kind %c: %v", kind, err)
		}
		if got.from != "" || len(got.ops) != 1 || len(got.closes) != 1 || len(es) != 1 || es[0] != good {
			t.Fatalf("kind %c: read back from %q, %d decisions, %d closes, records %+v", kind, got.from, len(got.ops), len(got.closes), es)
		}
	}
}

// decisionsOf holds ds, as decisions taken from another member.
func decisionsOf(ds []operator.Decision) *operator.Decisions {
	d := operator.New(operator.Options{})
	d.Merge(ds, "test")
	return d
}
