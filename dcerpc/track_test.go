package dcerpc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"
)

// conversation is one client's MAPI-like connection: a bind to EMSMDB,
// three calls (the second answered by a fault, the third with a stub
// over peekMax in two fragments), and an alter_context to NSPI that is
// rejected; with the server's answers, and when each was sent.
func conversation() (client, server [][]byte) {
	big := bytes.Repeat([]byte{0xa5}, 3000)
	second := Response(4, big)
	second[3] = flagLastFrag // the second fragment of call 4
	first := Response(4, big)
	first[3] = flagFirstFrag
	client = [][]byte{Bind(1, EMSMDB), Request(2, 1, []byte("a")), Request(3, 1, []byte("b")), Request(4, 1, big), AlterContext(5, NSPI)}
	server = [][]byte{BindAck(1, true, "60001"), Response(2, []byte("ok")), FaultResponse(3, 0x1c010003), append(first, second...), AlterContextResp(5, false)}
	return client, server
}

// feedTracker plays a conversation through t in pieces of n bytes, each
// client PDU then its answer, a millisecond apart, and returns the events.
func feedTracker(t *Tracker, client, server [][]byte, n int) []Event {
	now := time.Unix(1e9, 0)
	var out []Event
	for i := range client {
		for b := client[i]; len(b) > 0; b = b[min(n, len(b)):] {
			t.FromClient(b[:min(n, len(b))], now)
		}
		now = now.Add(time.Millisecond)
		if i < len(server) {
			for b := server[i]; len(b) > 0; b = b[min(n, len(b)):] {
				out = append(out, t.FromServer(b[:min(n, len(b))], now)...)
			}
		}
	}
	return out
}

// With Calls, every outcome is told, however the reads cut the stream:
// the bind accepted for EMSMDB, two calls answered after a millisecond
// each, one fault with its status, a call whose answer came in
// fragments longer than a tracker holds told once at its last fragment,
// and the alter_context's rejection of NSPI; nothing is left unread.
func TestTrackerTellsEveryOutcome(t *testing.T) {
	client, server := conversation()
	want := []Event{
		{Kind: EventBind, Interface: EMSMDB, Bind: BindResult{Accepted: true}},
		{Kind: EventCall, CallID: 2, Elapsed: time.Millisecond},
		{Kind: EventCall, CallID: 3, Fault: true, Status: 0x1c010003, Elapsed: time.Millisecond},
		{Kind: EventCall, CallID: 4, Elapsed: time.Millisecond},
		{Kind: EventBind, Interface: NSPI, Bind: BindResult{Result: 2, Reason: 1}, Alter: true},
	}
	for _, n := range []int{1, 2, 3, 7, 16, 17, 255, 256, 257, 1000, 1 << 20} {
		tr := Tracker{Calls: true}
		got := feedTracker(&tr, client, server, n)
		if len(got) != len(want) {
			t.Fatalf("pieces of %d: %d events %+v, want %+v", n, len(got), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("pieces of %d: event %d is %+v, want %+v", n, i, got[i], want[i])
			}
		}
		if u := tr.Unparsed(); u != 0 || tr.ClientDone() || tr.ServerDone() {
			t.Fatalf("pieces of %d: %d bytes unparsed, done %v %v", n, u, tr.ClientDone(), tr.ServerDone())
		}
	}
}

// Without Calls, a tracker reads the first PDU each way (the bind and
// its answer), then says it is done with both directions and tells
// nothing of the calls after.
func TestTrackerOfBindsStopsAfterTheBind(t *testing.T) {
	client, server := conversation()
	var tr Tracker
	tr.FromClient(client[0][:10], time.Now())
	if tr.ClientDone() {
		t.Fatal("done before the bind was whole")
	}
	client[0] = client[0][10:]
	got := feedTracker(&tr, client, server, 5)
	if len(got) != 1 || got[0].Kind != EventBind || got[0].Interface != EMSMDB || !got[0].Bind.Accepted {
		t.Fatalf("events %+v, want only the bind", got)
	}
	if !tr.ClientDone() || !tr.ServerDone() {
		t.Fatalf("done %v %v after the bind and its answer", tr.ClientDone(), tr.ServerDone())
	}
}

// A bind_nak is told as a rejection with its reason.
func TestTrackerTellsBindNak(t *testing.T) {
	var tr Tracker
	tr.FromClient(Bind(1, NSPI), time.Now())
	got := tr.FromServer(BindNak(1, 4), time.Now())
	if len(got) != 1 || got[0].Interface != NSPI || got[0].Bind != (BindResult{Nak: true, Reason: 4}) {
		t.Fatalf("events %+v", got)
	}
}

// Bytes that are not DCE/RPC are counted, all of them, and the tracker
// is done with that direction; the other goes on.
func TestTrackerCountsWhatIsNotDCERPC(t *testing.T) {
	tr := Tracker{Calls: true}
	tr.FromClient([]byte("GET / HTTP/1.1\r\nHost: cas\r\n\r\n"), time.Now())
	tr.FromClient([]byte("more"), time.Now())
	if u := tr.Unparsed(); u != 33 || !tr.ClientDone() || tr.ServerDone() {
		t.Fatalf("unparsed %d, done %v %v", u, tr.ClientDone(), tr.ServerDone())
	}
	if got := tr.FromServer(FaultResponse(9, 5), time.Now()); len(got) != 1 || got[0].Status != 5 || got[0].Elapsed != 0 {
		t.Fatalf("fault to a call not seen: %+v", got)
	}
}

// A tracker's memory is fixed: under 1 KiB, whatever it is sent, and
// calls never answered do not pile up.
func TestTrackerIsBounded(t *testing.T) {
	if n := unsafe.Sizeof(Tracker{}); n > 1024 {
		t.Fatalf("a Tracker is %d bytes", n)
	}
	tr := Tracker{Calls: true}
	start := time.Now()
	for id := range uint32(1000) {
		tr.FromClient(Request(id, 0, nil), start.Add(time.Duration(id)*time.Millisecond))
	}
	if tr.ncalls != maxCalls {
		t.Fatalf("%d calls held", tr.ncalls)
	}
	if got := tr.FromServer(Response(999, nil), start.Add(time.Second)); len(got) != 1 || got[0].Elapsed != time.Millisecond {
		t.Fatalf("the latest call was dropped: %+v", got)
	}
}

func FuzzTracker(f *testing.F) {
	client, server := conversation()
	f.Add(bytes.Join(client, nil), bytes.Join(server, nil), uint8(7), true)
	seeds, _ := filepath.Glob("testdata/samba-*.bin")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(Bind(1, EPM), b, uint8(3), false)
	}
	f.Fuzz(func(t *testing.T, c, s []byte, n uint8, calls bool) {
		tr := Tracker{Calls: calls}
		step := int(n%64) + 1
		var events int
		for i := 0; i < len(c) || i < len(s); i += step {
			if i < len(c) {
				tr.FromClient(c[i:min(i+step, len(c))], time.Now())
			}
			if i < len(s) {
				events += len(tr.FromServer(s[i:min(i+step, len(s))], time.Now()))
			}
		}
		if u := tr.Unparsed(); u < 0 || u > int64(len(c)+len(s))+1<<16 {
			t.Fatalf("unparsed %d of %d bytes", u, len(c)+len(s))
		}
		if events > len(s)/headerLen+1 {
			t.Fatalf("%d events from %d bytes", events, len(s))
		}
		if tr.ncalls > maxCalls {
			t.Fatalf("%d calls held", tr.ncalls)
		}
	})
}
