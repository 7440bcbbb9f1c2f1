package nlbimport

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Result is the lb.toml written for an export, and what the operator
// must know about it.
type Result struct {
	TOML string
	// Dropped is what could not be carried over; Decide is what the
	// operator must still choose.
	Dropped, Decide []string

	// What TOML was written to say, for the tests to hold the text to:
	// listeners by name; pools by name, their backends by name.
	listeners map[string]listenerOut
	backends  map[string]map[string]backendOut
}

type listenerOut struct{ listen, pool string }

type backendOut struct {
	node, address string
	weight        int
	backup        bool
}

// rule is one port rule as the whole cluster has it.
type rule struct {
	vip       string // "" for every cluster address
	first     int
	last      int
	proto     string
	mode      string // Multiple or Single
	affinity  string
	timeout   string
	hosts     []host // the nodes that serve it, by name
	disabled  bool
	disabledN []string // nodes where it is disabled while others serve it
}

// host is one node's share of a rule.
type host struct {
	node     string
	weight   int  // Multiple: the load weight (1 for equal load)
	priority int  // Single: handling priority, lowest first
	backup   bool // Single: not the highest priority
}

// Build maps an export to an lb.toml.
func Build(e *Export, source string) (*Result, error) {
	dips, err := dedicated(e)
	if err != nil {
		return nil, err
	}
	vips, err := clusterAddrs(e)
	if err != nil {
		return nil, err
	}
	rules, err := gather(e)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		for _, h := range r.hosts {
			if dips[h.node] == "" {
				return nil, fmt.Errorf("port rule %s names node %s, which Nodes does not list with a dedicated address", r.describe(), show(h.node))
			}
		}
	}
	if err := overlaps(rules); err != nil {
		return nil, err
	}
	res := &Result{}
	if m := strings.ToLower(string(e.Cluster.Mode)); strings.Contains(m, "multicast") {
		res.Dropped = append(res.Dropped, fmt.Sprintf("cluster mode %s: stickylb is a proxy on its own address, with no MAC sharing; the virtual addresses move to the stickylb host (or its keepalived pair)", show(string(e.Cluster.Mode))))
	}
	w := writer{res: res, dips: dips, vips: vips, source: source, cluster: string(e.Cluster.Name)}
	w.write(rules)
	if len(res.listeners) == 0 {
		return nil, fmt.Errorf("no enabled TCP port rule: nothing to balance (not carried over: %s)", strings.Join(res.Dropped, "; "))
	}
	return res, nil
}

// dedicated maps each node to its first IPv4 dedicated address (or its
// first at all): the address stickylb reaches it at. An address with a
// zone (fe80::1%12) names a link of the NLB host, not one stickylb has,
// so it is never the one picked.
func dedicated(e *Export) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range e.Nodes {
		var pick string
		for _, d := range n.Dips {
			a, err := netip.ParseAddr(string(d))
			if err != nil {
				return nil, fmt.Errorf("node %s: dedicated address %s is not an IP address", show(string(n.Name)), tomlString(string(d)))
			}
			if a.Zone() == "" && (pick == "" || (a.Is4() && !strings.Contains(pick, "."))) {
				pick = a.String()
			}
		}
		if pick == "" {
			return nil, fmt.Errorf("node %s: no dedicated address stickylb can reach (those with a zone are of the NLB host's own links)", show(string(n.Name)))
		}
		for other, addr := range out {
			if addr == pick {
				return nil, fmt.Errorf("nodes %s and %s share the dedicated address %s: each NLB host has its own", show(other), show(string(n.Name)), pick)
			}
		}
		if _, dup := out[string(n.Name)]; dup {
			return nil, fmt.Errorf("node %s is listed twice", show(string(n.Name)))
		}
		out[string(n.Name)] = pick
	}
	return out, nil
}

// clusterAddrs lists the cluster's virtual addresses.
func clusterAddrs(e *Export) ([]string, error) {
	var out []string
	for _, v := range append([]text{e.Cluster.IPAddress}, e.Vips...) {
		if v == "" {
			continue
		}
		a, err := netip.ParseAddr(string(v))
		if err != nil {
			return nil, fmt.Errorf("cluster address %q is not an IP address", v)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a == allVIPs || a.Zone() != "" {
			return nil, fmt.Errorf("cluster address %s is not an address clients connect to", show(a.String()))
		}
		if !slices.Contains(out, a.String()) {
			out = append(out, a.String())
		}
	}
	return out, nil
}

// allVIPs is the VirtualIPAddress of a global rule: Microsoft's WMI
// provider calls it "All Vip (AKA 'Rest of the VIPs')"
// (MicrosoftNLB_NodeSetting.GetPortRuleEx).
var allVIPs = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// gather joins every node's view of the rules into one rule each.
func gather(e *Export) ([]*rule, error) {
	byKey := map[string]*rule{}
	var order []string
	var errs []error
	for i, pr := range e.PortRules {
		r, h, enabled, err := readEntry(pr)
		if err != nil {
			errs = append(errs, fmt.Errorf("port rule entry %d (node %s, ports %s-%s): %w", i+1, show(string(pr.NodeName)), show(string(pr.StartPort)), show(string(pr.EndPort)), err))
			continue
		}
		k := fmt.Sprintf("%s|%d|%d|%s", r.vip, r.first, r.last, r.proto)
		have := byKey[k]
		if have == nil {
			have, byKey[k] = r, r
			order = append(order, k)
			have.disabled = true // until a node serves it
		}
		switch {
		case !enabled:
			have.disabledN = append(have.disabledN, h.node)
		case r.mode == "Disabled":
		case slices.ContainsFunc(have.hosts, func(o host) bool { return o.node == h.node }):
			// The same node's view twice: NLB has one per node.
		default:
			have.disabled = false
			have.mode, have.affinity = r.mode, r.affinity
			have.hosts = append(have.hosts, h)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]*rule, 0, len(order))
	for _, k := range order {
		r := byKey[k]
		if r.mode == "Single" {
			slices.SortFunc(r.hosts, func(a, b host) int { return a.priority - b.priority })
			for i := range r.hosts {
				r.hosts[i].backup = i > 0
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// overlaps refuses rules of one address that share a port, two global
// rules among them: NLB finds a connection's rule by its address and
// port (GetPortRuleEx), so it does not allow them, and an export with
// them is not of a working cluster. A global rule beside an address's
// own rule for some of its ports is not an overlap: that address's
// rule governs those ports of it, the global rule the rest (a "virtual
// cluster", as the Windows Server 2003 deployment guide calls it).
func overlaps(rules []*rule) error {
	for i, a := range rules {
		for _, b := range rules[:i] {
			if a.vip == b.vip && a.first <= b.last && b.first <= a.last {
				return fmt.Errorf("port rules %s and %s overlap (port %d), which NLB does not allow: the export is not of one consistent cluster", b.describe(), a.describe(), max(a.first, b.first))
			}
		}
	}
	return nil
}

// readEntry reads one node's entry of a rule.
func readEntry(pr PortRule) (*rule, host, bool, error) {
	first, err1 := strconv.Atoi(string(pr.StartPort))
	last, err2 := strconv.Atoi(string(pr.EndPort))
	if err1 != nil || err2 != nil || first < 0 || last > 65535 || last < first {
		return nil, host{}, false, fmt.Errorf("ports %q-%q are not a range of 0-65535", pr.StartPort, pr.EndPort)
	}
	r := &rule{first: first, last: last, timeout: string(pr.Timeout)}
	var err error
	if r.proto, err = word("Protocol", pr.Protocol, "Tcp", "Udp", "Both"); err != nil {
		return nil, host{}, false, err
	}
	if r.mode, err = word("FilteringMode", pr.FilteringMode, "Multiple", "Single", "Disabled"); err != nil {
		return nil, host{}, false, err
	}
	if r.mode == "Multiple" {
		if r.affinity, err = word("Affinity", pr.Affinity, "None", "Single", "Network"); err != nil {
			return nil, host{}, false, err
		}
	}
	if v := string(pr.VirtualIPAddress); v != "" && !strings.EqualFold(v, "All") {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Unmap().IsUnspecified() || a.Zone() != "" {
			return nil, host{}, false, fmt.Errorf("VirtualIPAddress %q is not a cluster address", v)
		}
		if a.Unmap() != allVIPs {
			r.vip = a.Unmap().String()
		}
	}
	h := host{node: string(pr.NodeName), weight: 1}
	if strings.EqualFold(string(pr.EqualLoad), "false") && r.mode == "Multiple" {
		if h.weight, err = strconv.Atoi(string(pr.LoadWeight)); err != nil || h.weight < 0 || h.weight > 100 {
			return nil, host{}, false, fmt.Errorf("LoadWeight %q is not 0-100", pr.LoadWeight)
		}
	}
	if r.mode == "Single" {
		if h.priority, err = strconv.Atoi(string(pr.Priority)); err != nil {
			return nil, host{}, false, fmt.Errorf("Priority %q is not a number (single-host rules need each node's handling priority)", pr.Priority)
		}
	}
	enabled := !strings.EqualFold(string(pr.PortState), "Disabled")
	return r, h, enabled, nil
}

// word reads one of a few words, in any case; a number is the sign of
// an export without the script, which writes enums as numbers.
func word(key string, v text, words ...string) (string, error) {
	for _, w := range words {
		if strings.EqualFold(string(v), w) {
			return w, nil
		}
	}
	if _, err := strconv.Atoi(string(v)); err == nil {
		return "", fmt.Errorf("%s is the number %s: export with the script in `stickylb import-nlb --help`, which writes names", key, v)
	}
	return "", fmt.Errorf("%s %q is not one of %s", key, v, strings.Join(words, ", "))
}
