package nlbimport

import (
	"fmt"
	"slices"
	"strings"
)

// writer builds the TOML text of a Result.
type writer struct {
	res       *Result
	dips      map[string]string // node -> address
	vips      []string
	source    string
	cluster   string
	b         strings.Builder
	pools     []*poolOut
	listeners int
}

// poolOut is a pool of the output: the rules that share hosts, weights,
// mode and affinity share one, and so one affinity table, as NLB's hash
// put a client on the same host for each of them.
type poolOut struct {
	name     string
	key      string
	rule     *rule // the first rule, for its hosts and affinity
	has135   bool
	onlyEach bool // every listener takes a range
}

func (w *writer) write(rules []*rule) {
	fmt.Fprintf(&w.b, "# Imported from Windows NLB cluster %q (%s) by `stickylb import-nlb`.\n", w.cluster, w.source)
	w.b.WriteString("# Each listener says which NLB port rule it comes from. Check it with\n# `stickylb check -c FILE` and read docs/deploy.md, \"Migrating from NLB\".\n\n")
	w.b.WriteString("[global]\n# Pins survive restarts (the packaged unit's state directory).\nsnapshot_file = \"/var/lib/stickylb/pins.json\"\n\n")
	w.b.WriteString("[admin]\nlisten = \"127.0.0.1:9090\"\n\n")
	w.res.Decide = append(w.res.Decide,
		"health checks: NLB checked only that each host's NLB driver was alive, not the service; for Exchange, enable the rpc checks written commented out in each MAPI pool (docs/config.md, \"Exchange RPC checks\")",
		"snapshot_file is /var/lib/stickylb/pins.json, the packaged unit's state directory: change it for a by-hand install",
		"admin listens on 127.0.0.1:9090: to reach it from elsewhere, set admin.listen and admin.token_file",
		"the CAS sees stickylb's address, not the client's, unless pools set transparent = true with the routing in docs/deploy.md (NLB kept client addresses)")
	for _, r := range rules {
		w.rule(r)
	}
	for _, p := range w.pools {
		w.pool(p)
	}
	w.res.TOML = w.b.String()
}

// describe says what an NLB rule was, for comments and messages.
func (r *rule) describe() string {
	on := "every cluster address"
	if r.vip != "" {
		on = r.vip
	}
	ports := fmt.Sprint(r.first)
	if r.last != r.first {
		ports = fmt.Sprintf("%d-%d", r.first, r.last)
	}
	return fmt.Sprintf("%s %s on %s", strings.ToUpper(r.proto), ports, on)
}

func (w *writer) rule(r *rule) {
	d := r.describe()
	switch {
	case r.disabled:
		fmt.Fprintf(&w.b, "# NLB port rule %s: disabled in NLB, left out.\n\n", d)
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: disabled in NLB, left out", d))
		return
	case r.proto == "Udp":
		fmt.Fprintf(&w.b, "# NLB port rule %s: UDP, which stickylb does not balance; left out.\n\n", d)
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: UDP, left out (stickylb balances TCP)", d))
		return
	case r.proto == "Both":
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: its UDP half (stickylb balances TCP)", d))
	}
	if t := r.timeout; t != "" && t != "0" {
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: extended affinity timeout of %s minutes; a stickylb pin lasts while its client has a connection open and affinity.ttl (3h) after", d, t))
	}
	if len(r.disabledN) > 0 {
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: disabled on %s in NLB, so those hosts are not its backends", d, strings.Join(r.disabledN, ", ")))
	}
	first := r.first
	if first == 0 {
		first = 1
		if r.last == 0 {
			fmt.Fprintf(&w.b, "# NLB port rule %s: port 0 alone, which no TCP connection uses; left out.\n\n", d)
			w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: port 0 alone, left out", d))
			return
		}
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: port 0 (no TCP connection uses it); the listener starts at 1", d))
	}
	p := w.poolFor(r)
	vips := w.vips
	if r.vip != "" {
		vips = []string{r.vip}
	}
	for _, vip := range vips {
		name := fmt.Sprintf("tcp-%d", first)
		if r.last != first {
			name = fmt.Sprintf("tcp-%d-%d", first, r.last)
		}
		if i := slices.Index(w.vips, vip); len(w.vips) > 1 {
			name += fmt.Sprintf("-vip%d", i+1)
		}
		ports := fmt.Sprint(first)
		if r.last != first {
			ports = fmt.Sprintf("%d-%d", first, r.last)
		}
		fmt.Fprintf(&w.b, "# NLB port rule %s: %s.\n", d, r.how())
		fmt.Fprintf(&w.b, "[listener.%s]\nlisten = %q\npool = %q\n\n", name, hostPort(vip, ports), p.name)
		w.listeners++
	}
	if r.first <= 135 && 135 <= r.last {
		p.has135 = true
	}
	if r.first == r.last {
		p.onlyEach = false
	}
}

func hostPort(addr, ports string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + ports
	}
	return addr + ":" + ports
}

// how says an NLB rule's filtering and affinity.
func (r *rule) how() string {
	if r.mode == "Single" {
		return "single host (the highest handling priority takes everything; the others are backups)"
	}
	return "multiple hosts, affinity " + r.affinity
}

// poolFor finds or makes the pool of rules served alike.
func (w *writer) poolFor(r *rule) *poolOut {
	var k strings.Builder
	fmt.Fprintf(&k, "%s|%s", r.mode, r.affinity)
	for _, h := range r.hosts {
		fmt.Fprintf(&k, "|%s:%d:%v", h.node, h.weight, h.backup)
	}
	for _, p := range w.pools {
		if p.key == k.String() {
			return p
		}
	}
	p := &poolOut{name: fmt.Sprintf("nlb%d", len(w.pools)+1), key: k.String(), rule: r, onlyEach: true}
	w.pools = append(w.pools, p)
	return p
}

func (w *writer) pool(p *poolOut) {
	r := p.rule
	fmt.Fprintf(&w.b, "[pool.%s]\nbalance = \"hash\"\n", p.name)
	key := map[string]string{"None": "connection", "Single": "src-ip", "Network": "src-net", "": "src-ip"}[r.affinity]
	fmt.Fprintf(&w.b, "[pool.%s.affinity]\nkey = %q\n", p.name, key)
	if key == "src-net" {
		w.b.WriteString("ipv4_prefix = 24   # NLB \"Network\" affinity is the client's class C (/24)\n")
	}
	w.checks(p)
	names := map[string]bool{}
	for _, h := range r.hosts {
		name := backendName(h.node, names)
		fmt.Fprintf(&w.b, "[pool.%s.backend.%s]\naddress = %q   # NLB node %s, its dedicated address\n", p.name, name, w.dips[h.node], h.node)
		fmt.Fprintf(&w.b, "weight = %d\n", h.weight)
		if h.backup {
			fmt.Fprintf(&w.b, "backup = true   # NLB handling priority %d\n", h.priority)
		}
	}
	w.b.WriteString("\n")
}

// checks writes the pool's health checks: a TCP check of the endpoint
// mapper where the pool forwards 135, and the rpc checks an Exchange
// array wants, commented out until the operator knows it is one.
func (w *writer) checks(p *poolOut) {
	switch {
	case p.has135:
		fmt.Fprintf(&w.b, "[pool.%s.check.epmap]\ntype = \"tcp\"\nport = 135\n", p.name)
		fmt.Fprintf(&w.b, "# For an Exchange CAS array, check its RPC services instead (docs/config.md):\n")
		fmt.Fprintf(&w.b, "# [pool.%s.check.rpc-client-access]\n# type = \"rpc\"\n# interface = \"emsmdb\"\n", p.name)
		fmt.Fprintf(&w.b, "# [pool.%s.check.address-book]\n# type = \"rpc\"\n# interface = \"nspi\"\n", p.name)
	case p.onlyEach:
		w.res.Decide = append(w.res.Decide, fmt.Sprintf("pool %s forwards ranges only, which a TCP check cannot probe: add a check with a port (or an rpc check)", p.name))
	}
}

// backendName makes a node name a TOML key, unique in its pool.
func backendName(node string, taken map[string]bool) string {
	var b strings.Builder
	for _, c := range strings.ToLower(node) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		name = "host"
	}
	for base, i := name, 2; taken[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	taken[name] = true
	return name
}
