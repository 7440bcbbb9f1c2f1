package config

import (
	"slices"
	"strings"
	"testing"
)

const casBackends = `
[pool.cas.backend.cas1]
address = "127.0.0.11"
[pool.cas.backend.cas2]
address = "127.0.0.12"
`

// A pool that forwards port ranges must have an active check that can
// take a dead CAS down: connects to a range never do (the client picks
// the port). check refuses one with nothing to probe, naming the key.
func TestRangePoolNeedsAnActiveCheck(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"ranges only, tcp check", "[listener.rpc]\nlisten = \"127.0.0.1:6005-6100\"\npool = \"cas\"\n" + casBackends,
			"pool.cas.health: pool cas forwards port ranges only (listener rpc (6005-6100))"},
		{"health off", "[listener.rpc]\nlisten = \"127.0.0.1:135,6005-6100\"\npool = \"cas\"\n" + casBackends + "[pool.cas.health]\nenabled = false\n",
			"pool.cas.health: pool cas forwards port ranges (listener rpc (6005-6100)), where a failed connect is the client's choice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	for _, ok := range []string{
		"[listener.rpc]\nlisten = \"127.0.0.1:135,6005-6100\"\npool = \"cas\"\n" + casBackends,
		"[listener.rpc]\nlisten = \"127.0.0.1:6005-6100\"\npool = \"cas\"\n" + casBackends + "[pool.cas.check.epm]\ntype = \"rpc\"\ninterface = \"emsmdb\"\n",
		"[listener.rpc]\nlisten = \"127.0.0.1:6005-6100\"\npool = \"cas\"\n" + casBackends + "[pool.cas.check.epm]\nport = 135\n",
	} {
		if _, err := Parse("f.toml", []byte(ok)); err != nil {
			t.Errorf("refused a range pool with a check that probes: %v\n%s", err, ok)
		}
	}
}

// A listener's ports are the fixed ones it names alone and the ranges,
// whose backend port the client picks.
func TestFixedAndClientPorts(t *testing.T) {
	for _, c := range []struct {
		listen string
		fixed  []int
		client string
	}{
		{"10.0.0.50:135", []int{135}, ""},
		{"10.0.0.50:135,6005-59530", []int{135}, "6005-59530"},
		{"10.0.0.50:135,6001,6002", []int{135, 6001, 6002}, ""},
		{"10.0.0.50:6005-59530", nil, "6005-59530"},
	} {
		l := &Listener{Listen: c.listen}
		if got := l.FixedPorts(); !slices.Equal(got, c.fixed) {
			t.Errorf("%s: fixed ports %v, want %v", c.listen, got, c.fixed)
		}
		if got := l.ClientPorts().String(); got != c.client {
			t.Errorf("%s: client ports %q, want %q", c.listen, got, c.client)
		}
	}
}

// The admin API's and the cluster's addresses are compared with each
// listener's as sets: a wildcard or a range that holds their port is
// caught, not just the same string. A listener that would bind the port
// is refused; a steered range, which leaves the port out, is warned of
// with both keys.
func TestOwnSocketsAgainstListeners(t *testing.T) {
	refused := []struct{ listen, admin, want string }{
		{"0.0.0.0:9090", "127.0.0.1:9090", "listener.x.listen: 0.0.0.0:9090 takes port 9090 on the address of admin.listen (127.0.0.1:9090)"},
		{"127.0.0.1:9085-9095", "127.0.0.1:9090", "takes port 9090 on the address of admin.listen"},
		{"[::]:9090", "127.0.0.1:9090", "takes port 9090 on the address of admin.listen"},
		{"127.0.0.1:9090", "127.0.0.1:9090", "takes port 9090 on the address of admin.listen"},
	}
	for _, c := range refused {
		src := "[admin]\nlisten = \"" + c.admin + "\"\n[listener.x]\nlisten = \"" + c.listen + "\"\npool = \"cas\"\n" + casBackends +
			"[pool.cas.check.epm]\nport = 135\n"
		if _, err := Parse("f.toml", []byte(src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("listen %s, admin %s: error %v, want %q", c.listen, c.admin, err, c.want)
		}
	}
	if _, err := Parse("f.toml", []byte("[admin]\nlisten = \"127.0.0.1:9090\"\n[listener.x]\nlisten = \"127.0.0.2:9090\"\npool = \"cas\"\n"+casBackends)); err != nil {
		t.Errorf("another address of the same port was refused: %v", err)
	}
	src := "[admin]\nlisten = \"127.0.0.1:9090\"\n[cluster]\nbind = \"127.0.0.1:7946\"\n" +
		"[listener.rpc]\nlisten = \"0.0.0.0:135,6005-59530\"\npool = \"cas\"\n" + casBackends
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ReservedPorts(c.Listeners["rpc"]); !slices.Equal(got, []uint16{9090, 7946}) {
		t.Fatalf("reserved ports %v, want [9090 7946]", got)
	}
	var found []string
	for _, w := range c.Warnings() {
		if strings.Contains(w.Error(), "listener.rpc.listen") && strings.Contains(w.Error(), "leaves port") {
			found = append(found, w.Error())
		}
	}
	if len(found) != 2 || !strings.Contains(found[0], "admin.listen") || !strings.Contains(found[1], "cluster.bind") {
		t.Fatalf("warnings of the range's own ports %q, want admin.listen and cluster.bind", found)
	}
}
