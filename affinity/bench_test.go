package affinity

import (
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchKey(i int) Key {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return Keyer{}.Key(netip.AddrPortFrom(a, 1))
}

func benchKey6(i int) Key {
	a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	return Keyer{}.Key(netip.AddrPortFrom(a, 1))
}

func keep(cur Current) (string, RepinReason, error) {
	if cur.Backend != "" {
		return cur.Backend, "", nil
	}
	return "cas1", "", nil
}

func filled(n int) *Table { return filledWith(n, benchKey) }

func filledWith(n int, key func(int) Key) *Table {
	t := NewTable(Config{MaxEntries: n})
	for i := range n {
		l, _ := t.Acquire(key(i), keep)
		l.Release()
	}
	return t
}

// BenchmarkAcquireHit is the common case: a known client connects. Run in
// parallel over a table of 10k and of 1M pins.
func BenchmarkAcquireHit(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		t := filled(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1) * 7919)
				for pb.Next() {
					i++
					l, err := t.Acquire(benchKey(i%n), keep)
					if err != nil {
						b.Fatal(err)
					}
					l.Release()
				}
			})
		})
	}
}

// BenchmarkAcquireNew pins new clients into a full table (each pin evicts
// the least recently used one).
func BenchmarkAcquireNew(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		t := filled(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			next.Store(int64(n))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l, _ := t.Acquire(benchKey(int(next.Add(1))), keep)
					l.Release()
				}
			})
		})
	}
}

// BenchmarkAcquireNewQuota is BenchmarkAcquireNew with the quota config
// gives by default (max_entries / 16), so that every new pin and every
// eviction also reads and counts its prefixes (prefix.go).
func BenchmarkAcquireNewQuota(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		t := NewTable(Config{MaxEntries: n, Prefix: PrefixRule{Max: n / 16}})
		for i := range n {
			l, _ := t.Acquire(benchKey(i), keep)
			l.Release()
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			next.Store(int64(n))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l, _ := t.Acquire(benchKey(int(next.Add(1))), keep)
					l.Release()
				}
			})
		})
	}
}

// BenchmarkMemoryPerPin reports the heap held per pin at 1M pins, for
// IPv4 and for IPv6 clients (their keys are stored differently, see shard).
func BenchmarkMemoryPerPin(b *testing.B) {
	const n = 1_000_000
	for _, fam := range []struct {
		name string
		key  func(int) Key
	}{{"ipv4", benchKey}, {"ipv6", benchKey6}} {
		b.Run(fam.name, func(b *testing.B) {
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				t := filledWith(n, fam.key)
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/pin")
				runtime.KeepAlive(t)
			}
		})
	}
}

// BenchmarkPinsPerBackend is what the dashboard's poll of /api/backends
// costs at a million pins: the kept counts against a walk of the table.
func BenchmarkPinsPerBackend(b *testing.B) {
	t := filled(1_000_000)
	b.Run("counts", func(b *testing.B) {
		for range b.N {
			if t.Counts()["cas1"] != t.Len() {
				b.Fatal("wrong count")
			}
		}
	})
	b.Run("walk", func(b *testing.B) {
		for range b.N {
			n := map[string]int{}
			t.Range(func(in Record) bool { n[in.Backend]++; return true })
		}
	})
}

// BenchmarkPageDeep is one page of 100 pins half way through a table of a
// million, by cursor.
func BenchmarkPageDeep(b *testing.B) {
	t := filled(1_000_000)
	c := t.CursorAt(500_000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if page, _, _ := t.Page(c, 100, nil); len(page) != 100 {
			b.Fatal("short page")
		}
	}
}

// BenchmarkBackendNames numbers b.N new backend names through Merge, up
// to the 16-bit bound: its ns/op stays flat as N grows where numbering is
// linear (it was quadratic: 32,900 names cost 41.5 s).
func BenchmarkBackendNames(b *testing.B) {
	n := min(b.N, maxNames)
	tb := NewTable(Config{MaxEntries: n + 1})
	now := time.Now().Unix()
	b.ResetTimer()
	for i := range n {
		k := Keyer{}.Key(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 0))
		tb.Merge(Record{Key: k, Backend: "b" + strconv.Itoa(i), Version: 1, Created: now})
	}
}
