package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// The gossip key is changed member by member with no partition, as
// docs/cluster.md says: add the new key everywhere, make it first
// everywhere, drop the old one. After each step a pin made at either
// member reaches the other; a member holding only the old key cannot join
// at the end.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	addrs := []string{lbtest.FreeAddr(t, "127.0.4.40"), lbtest.FreeAddr(t, "127.0.4.41")}
	a := startNodeWith(t, "ka", addrs[0], addrs, 100, nil, [][]byte{oldKey})
	b := startNodeWith(t, "kb", addrs[1], addrs, 100, nil, [][]byte{oldKey})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !b.m.Join(ctx) {
		t.Fatal("two members with one key did not join")
	}
	client := 0
	shared := func(step string) {
		t.Helper()
		for _, from := range []*node{a, b} {
			client++
			l, _ := from.table.Acquire(clientKey(client), pinTo("cas2"))
			l.Release()
			to := map[*node]*node{a: b, b: a}[from]
			lbtest.Eventually(t, 5*time.Second, fmt.Sprintf("%s: client %d's pin shared", step, client), func() bool {
				in, _ := to.table.Lookup(clientKey(client))
				return in.Backend == "cas2"
			})
		}
	}
	shared("one key")
	for _, step := range []struct {
		name string
		keys [][]byte
	}{
		{"new key added", [][]byte{oldKey, newKey}},
		{"new key first", [][]byte{newKey, oldKey}},
		{"old key dropped", [][]byte{newKey}},
	} {
		if err := a.m.SetKeys(step.keys); err != nil {
			t.Fatal(err)
		}
		shared(step.name + " at one member")
		if err := b.m.SetKeys(step.keys); err != nil {
			t.Fatal(err)
		}
		shared(step.name + " at both")
	}
	stale := startNodeWith(t, "kstale", lbtest.FreeAddr(t, "127.0.4.42"), addrs, 100, nil, [][]byte{oldKey})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if stale.m.Join(ctx2) {
		t.Fatal("a member with only the dropped key joined")
	}
}
