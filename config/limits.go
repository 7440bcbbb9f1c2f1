package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// What the cluster's messages carry, in one place, so that check refuses
// what they could not. A message carries each name (a pool's, a
// backend's, the sender's) and each operator's decision (as JSON) as one
// entry of at most MaxWireText bytes after a one-byte mark; a member of
// an earlier release refuses the whole message over a longer one. A
// decision is a backend's and its pool's names plus at most 108 bytes of
// the rest, so names of up to MaxName bytes each, as JSON writes them,
// make every decision fit (TestLongestDecisionFits).
const (
	MaxWireText = 254
	MaxName     = 64
)

// checkNames refuses, with a cluster, names longer than MaxName: the
// pool and backend names the members send, and this member's name.
// Without one, names go nowhere that bounds them.
func (c *Config) checkNames(v *checker) {
	if !c.Cluster.Enabled() {
		return
	}
	if n := len(c.Cluster.NodeName); n > MaxName {
		v.errAt("cluster.node_name", "is %d bytes; a member's name may be %d at most, so that every message it sends carries it", n, MaxName)
	}
	for _, pname := range slices.Sorted(maps.Keys(c.Pools)) {
		v.nameFits("pool."+pname, "pool", pname)
		for _, bname := range slices.Sorted(maps.Keys(c.Pools[pname].Backends)) {
			v.nameFits("pool."+pname+".backend."+bname, "backend", bname)
		}
	}
}

// nameFits reports a pool or backend name longer than MaxName as JSON
// writes it (a quote, a backslash, <, >, & and control characters take
// 2 to 6 bytes).
func (v *checker) nameFits(at, what, name string) {
	n := jsonLen(name)
	if n <= MaxName {
		return
	}
	how := ""
	if n != len(name) {
		how = " as JSON writes it"
	}
	msg := fmt.Sprintf("the %s name is %d bytes%s; with [cluster] a name may be %d at most, so that the members' messages carry its pins and an operator's decisions about it: give it a shorter name", what, n, how, MaxName)
	v.errs = append(v.errs, &Error{File: v.file, Line: v.firstLine(at), Key: at, Msg: msg})
}

// firstLine is the line of table at, or of the first table or key in
// it: a pool may have no [pool.NAME] header, only its backends'.
func (v *checker) firstLine(at string) int {
	line := v.lines[at]
	for p, l := range v.lines {
		if strings.HasPrefix(p, at+".") && (line == 0 || l < line) {
			line = l
		}
	}
	return line
}

// jsonLen is the length of s in a JSON string, without the quotes.
func jsonLen(s string) int {
	b, _ := json.Marshal(s) // a string always marshals
	return len(b) - 2
}
