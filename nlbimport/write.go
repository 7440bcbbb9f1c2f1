package nlbimport

import (
	"fmt"
	"slices"
	"strings"
)

// writer builds the TOML text of a Result.
type writer struct {
	res     *Result
	dips    map[string]string // node -> address
	vips    []string
	rules   []*rule // all of them, for the ports each address's own rules take
	source  string
	cluster string
	b       strings.Builder
	pools   []*poolOut
	names   map[string]bool // listener names taken
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
	w.rules, w.names = rules, map[string]bool{}
	w.res.listeners, w.res.backends = map[string]listenerOut{}, map[string]map[string]backendOut{}
	fmt.Fprintf(&w.b, "# Imported from Windows NLB cluster %s (%s) by `stickylb import-nlb`.\n", tomlString(w.cluster), show(w.source))
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
	return fmt.Sprintf("%s %s on %s", strings.ToUpper(r.proto), spans{{r.first, r.last}}, on)
}

// rule writes a listener on each address the rule governs, with the
// ports it governs there: all of its own for an address's rule; for a
// global rule, on an address with rules of its own, those rules' ports
// taken out, as NLB takes an address's own rule first and the global
// rule ("All", 255.255.255.255: the rest of the addresses) for the rest.
func (w *writer) rule(r *rule) {
	first, ok := w.carry(r)
	if !ok {
		return
	}
	d := r.describe()
	p := w.poolFor(r)
	vips := w.vips
	if r.vip != "" {
		vips = []string{r.vip}
	}
	for _, vip := range vips {
		own := w.ownRules(r, vip)
		ports := span{first, r.last}.minus(own.spans)
		if len(ports) == 0 {
			fmt.Fprintf(&w.b, "# NLB port rule %s: on %s, that address's own %s governed all of its ports in NLB (%s); no listener there.\n\n", d, vip, own.rules(), own.names)
			continue
		}
		fmt.Fprintf(&w.b, "# NLB port rule %s: %s.\n", d, r.how())
		if own.names != "" {
			fmt.Fprintf(&w.b, "# Except %s on %s, which that address's own %s governed in NLB (%s).\n", portWord(own.spans), vip, own.rules(), own.names)
		}
		name := w.listenerName(r, first, vip)
		listen := hostPort(vip, ports.String())
		fmt.Fprintf(&w.b, "[listener.%s]\nlisten = %s\npool = %s\n\n", name, tomlString(listen), tomlString(p.name))
		w.res.listeners[name] = listenerOut{listen, p.name}
		p.has135 = p.has135 || ports.contains(135)
		p.onlyEach = p.onlyEach && (len(ports) > 1 || ports[0].first != ports[0].last)
	}
}

// owned is the ports an address's own rules take from a global rule,
// and those rules described.
type owned struct {
	spans []span
	names string
}

func (o owned) rules() string {
	if len(o.spans) == 1 {
		return "rule"
	}
	return "rules"
}

// ownRules lists the rules of address vip that share ports with the
// global rule r, whatever their protocol or state: NLB finds the rule of
// a connection by its address and port, so on vip those ports are theirs
// (carried over, or left out and said so, as each rule is).
func (w *writer) ownRules(r *rule, vip string) owned {
	var o owned
	if r.vip != "" {
		return o
	}
	var names []string
	for _, s := range w.rules {
		if s.vip == vip && s.first <= r.last && r.first <= s.last {
			o.spans = append(o.spans, span{max(s.first, r.first), min(s.last, r.last)})
			names = append(names, s.describe())
		}
	}
	slices.SortFunc(o.spans, func(a, b span) int { return a.first - b.first })
	o.names = strings.Join(names, "; ")
	return o
}

// listenerName names a listener after its rule's ports, with the
// address's place among the cluster's when it has several; unique.
func (w *writer) listenerName(r *rule, first int, vip string) string {
	name := "tcp-" + spans{{first, r.last}}.String()
	if i := slices.Index(w.vips, vip); len(w.vips) > 1 {
		name += fmt.Sprintf("-vip%d", i+1)
	}
	for base, i := name, 2; w.names[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	w.names[name] = true
	return name
}

// carry says what of a rule is not carried over, and whether anything
// is: the first port its listeners take (1 where the rule starts at 0).
func (w *writer) carry(r *rule) (int, bool) {
	d := r.describe()
	switch {
	case r.disabled:
		fmt.Fprintf(&w.b, "# NLB port rule %s: disabled in NLB, left out.\n\n", d)
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: disabled in NLB, left out", d))
		return 0, false
	case r.proto == "Udp":
		fmt.Fprintf(&w.b, "# NLB port rule %s: UDP, which stickylb does not balance; left out.\n\n", d)
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: UDP, left out (stickylb balances TCP)", d))
		return 0, false
	case r.proto == "Both":
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: its UDP half (stickylb balances TCP)", d))
	}
	if t := r.timeout; t != "" && t != "0" {
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: extended affinity timeout of %s minutes; a stickylb pin lasts while its client has a connection open and affinity.ttl (3h) after", d, show(t)))
	}
	if len(r.disabledN) > 0 {
		shown := make([]string, len(r.disabledN))
		for i, n := range r.disabledN {
			shown[i] = show(n)
		}
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: disabled on %s in NLB, so those hosts are not its backends", d, strings.Join(shown, ", ")))
	}
	if r.first > 0 {
		return r.first, true
	}
	if r.last == 0 {
		fmt.Fprintf(&w.b, "# NLB port rule %s: port 0 alone, which no TCP connection uses; left out.\n\n", d)
		w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: port 0 alone, left out", d))
		return 0, false
	}
	w.res.Dropped = append(w.res.Dropped, fmt.Sprintf("port rule %s: port 0 (no TCP connection uses it); the listener starts at 1", d))
	return 1, true
}

// portWord says "port 80" or "ports 25,80-90".
func portWord(ps spans) string {
	if len(ps) == 1 && ps[0].first == ps[0].last {
		return "port " + ps.String()
	}
	return "ports " + ps.String()
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
		fmt.Fprintf(&k, "|%q:%d:%v", h.node, h.weight, h.backup)
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
	fmt.Fprintf(&w.b, "[pool.%s.affinity]\nkey = %s\n", p.name, tomlString(key))
	if key == "src-net" {
		w.b.WriteString("ipv4_prefix = 24   # NLB \"Network\" affinity is the client's class C (/24)\n")
	}
	w.checks(p)
	names := map[string]bool{}
	backends := map[string]backendOut{}
	for _, h := range r.hosts {
		name := backendName(h.node, names)
		fmt.Fprintf(&w.b, "[pool.%s.backend.%s]\naddress = %s   # NLB node %s, its dedicated address\n", p.name, name, tomlString(w.dips[h.node]), show(h.node))
		fmt.Fprintf(&w.b, "weight = %d\n", h.weight)
		if h.backup {
			fmt.Fprintf(&w.b, "backup = true   # NLB handling priority %d\n", h.priority)
		}
		backends[name] = backendOut{h.node, w.dips[h.node], h.weight, h.backup}
	}
	w.res.backends[p.name] = backends
	w.b.WriteString("\n")
}

// checks writes the pool's health checks: a TCP check of the endpoint
// mapper where the pool forwards 135 or forwards ranges only, and the
// rpc checks an Exchange array wants, commented out until the operator
// knows it is one.
func (w *writer) checks(p *poolOut) {
	switch {
	case p.has135:
		fmt.Fprintf(&w.b, "[pool.%s.check.epmap]\ntype = \"tcp\"\nport = 135\n", p.name)
		fmt.Fprintf(&w.b, "# For an Exchange CAS array, check its RPC services instead (docs/config.md):\n")
		fmt.Fprintf(&w.b, "# [pool.%s.check.rpc-client-access]\n# type = \"rpc\"\n# interface = \"emsmdb\"\n", p.name)
		fmt.Fprintf(&w.b, "# [pool.%s.check.address-book]\n# type = \"rpc\"\n# interface = \"nspi\"\n", p.name)
	case p.onlyEach:
		// A check probes fixed ports and a range has none, so check
		// wants one; every Windows host (an NLB node is one) runs
		// the endpoint mapper on 135, so its being up is a fair proxy.
		fmt.Fprintf(&w.b, "[pool.%s.check.epmap]\ntype = \"tcp\"\nport = 135   # the pool forwards ranges only; every Windows node runs the endpoint mapper here\n", p.name)
		w.res.Decide = append(w.res.Decide, fmt.Sprintf("pool %s forwards port ranges only: its health check probes each node's endpoint mapper (TCP 135); for an Exchange CAS array use rpc checks instead (docs/config.md)", p.name))
	}
}

// backendName makes a node name a TOML key, unique in its pool.
func backendName(node string, taken map[string]bool) string {
	var b strings.Builder
	for _, c := range strings.ToLower(node) {
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_':
			b.WriteRune(c)
		case !strings.HasSuffix(b.String(), "-"):
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
