package dcerpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
)

// lsarpc is the interface Samba's captured ept_map answer is for.
var lsarpc = mustSyntax("12345778-1234-abcd-ef00-0123456789ab", 0, 0)

// epmSession is a client's side and Samba's side of one endpoint-mapper
// connection: bind, ept_map for lsarpc, and the answers Samba sent.
func epmSession(t testing.TB) (client, server []byte) {
	ack, err := os.ReadFile("testdata/samba-bind-ack.bin")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := os.ReadFile("testdata/samba-map-lsarpc.bin")
	if err != nil {
		t.Fatal(err)
	}
	client = append(Bind(1, EPM), Request(2, OpMap, MapRequest(lsarpc))...)
	return client, append(ack, resp...)
}

// feedChunks feeds a watch both sides in pieces of n bytes, the client's
// first, and returns every endpoint learned.
func feedChunks(w *Watch, client, server []byte, n int) []Endpoint {
	for b := client; len(b) > 0; b = b[min(n, len(b)):] {
		w.FromClient(b[:min(n, len(b))])
	}
	var out []Endpoint
	for b := server; len(b) > 0; b = b[min(n, len(b)):] {
		out = append(out, w.FromServer(b[:min(n, len(b))])...)
	}
	return out
}

// Samba's real ept_map answer, however the reads cut it, hands out
// lsarpc on TCP port 40101 at Samba's address, once; the bind to the
// endpoint mapper is seen accepted; nothing is left unread.
func TestWatchLearnsSambasAnswer(t *testing.T) {
	client, server := epmSession(t)
	want := Endpoint{Interface: lsarpc, Protocol: protoTCP, Port: 40101, Addr: netip.MustParseAddr("10.250.1.2")}
	for n := 1; n <= len(server); n++ {
		var w Watch
		got := feedChunks(&w, client, server, n)
		if len(got) != 1 || got[0] != want {
			t.Fatalf("pieces of %d bytes: learned %v, want %v", n, got, want)
		}
		if iface, res, ok := w.Bound(); !ok || iface != EPM || !res.Accepted {
			t.Fatalf("pieces of %d: bound %v %v %v", n, iface, res, ok)
		}
		if u := w.Unparsed(); u != 0 {
			t.Fatalf("pieces of %d: %d bytes unparsed", n, u)
		}
	}
}

// An answer to a call that was not ept_map (here: no request seen)
// hands nothing out.
func TestWatchNeedsTheRequest(t *testing.T) {
	_, server := epmSession(t)
	var w Watch
	if got := w.FromServer(server); len(got) != 0 {
		t.Fatalf("learned %v from an answer to no request", got)
	}
}

// Bytes that are not DCE/RPC are counted, all of them, and nothing is
// learned; a fragment over the bound is passed over by its length and
// the PDU after it still read.
func TestWatchCountsWhatItCannotRead(t *testing.T) {
	var w Watch
	w.FromClient([]byte("GET / HTTP/1.0\r\n\r\n"))
	if u := w.Unparsed(); u != 18 {
		t.Fatalf("%d bytes of HTTP unparsed, want 18", u)
	}
	client, server := epmSession(t)
	big := header(TypeResponse, 9, scanMax+100)
	big = append(big, make([]byte, scanMax+100)...)
	var w2 Watch
	got := feedChunks(&w2, client, append(big, server...), 1000)
	if len(got) != 1 || got[0].Port != 40101 {
		t.Fatalf("after an oversized fragment: learned %v", got)
	}
	if u := w2.Unparsed(); u != int64(len(big)) {
		t.Fatalf("%d bytes unparsed, want the oversized fragment's %d", u, len(big))
	}
}

// A tower's floors give the interface, the protocol, the port and the
// address; a tower with a floor cut short is malformed.
func TestParseTower(t *testing.T) {
	tw := Tower(EMSMDB)
	binary.BigEndian.PutUint16(tw[len(tw)-4-2-1-2-2:], 6001) // the TCP floor's port
	copy(tw[len(tw)-4:], []byte{10, 0, 0, 12})
	e, err := ParseTower(tw)
	if err != nil || e.Interface != EMSMDB || !e.TCP() || e.Port != 6001 || e.Addr != netip.MustParseAddr("10.0.0.12") {
		t.Fatalf("tower: %+v, %v", e, err)
	}
	for i := 2; i < len(tw); i++ {
		if _, err := ParseTower(tw[:i]); err == nil {
			t.Fatalf("a tower cut at %d bytes was read", i)
		}
	}
}

// A bind names its interface, in either byte order's PDU.
func TestParseBind(t *testing.T) {
	p, err := ReadPDU(bytes.NewReader(Bind(1, NSPI)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ParseBind(p); err != nil || s != NSPI {
		t.Fatalf("bind: %v, %v", s, err)
	}
	if _, err := ParseBind(PDU{Type: TypeBind, Body: make([]byte, 20), Order: binary.LittleEndian}); err == nil {
		t.Fatal("a bind without a context was read")
	}
}

// FuzzWatch feeds a watch arbitrary streams both ways, cut into pieces
// of the given size. It never holds more than its bounds, and learns
// only TCP endpoints.
func FuzzWatch(f *testing.F) {
	client, server := epmSession(f)
	f.Add(client, server, uint8(7))
	f.Add(client, server, uint8(0))
	f.Fuzz(func(t *testing.T, client, server []byte, n uint8) {
		var w Watch
		for _, e := range feedChunks(&w, client, server, int(n)+1) {
			if !e.TCP() {
				t.Fatalf("learned %v", e)
			}
		}
		if cap(w.client.big) > scanMax || cap(w.server.big) > scanMax || len(w.join) > joinMax || len(w.pending) > maxPending {
			t.Fatalf("holds %d, %d, %d bytes and %d calls", cap(w.client.big), cap(w.server.big), len(w.join), len(w.pending))
		}
		if w.Unparsed() > int64(len(client)+len(server)) {
			t.Fatalf("%d bytes unparsed of %d", w.Unparsed(), len(client)+len(server))
		}
	})
}

// FuzzTower reads arbitrary towers and binds.
func FuzzTower(f *testing.F) {
	f.Add(Tower(EMSMDB))
	f.Add(Bind(1, EPM))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := ParseTower(b); err == nil && e.Protocol != 0 && e.Protocol != protoTCP {
			t.Fatalf("protocol %d", e.Protocol)
		}
		if len(b) >= headerLen {
			if n, err := fragLen(b, len(b)); err == nil {
				if p, err := decodePDU(b[:n]); err == nil {
					ParseBind(p)
					Opnum(p)
				}
			}
		}
	})
}

// The server's writers make what the readers read: a bind_ack accepted
// and rejected, and an ept_map answer handing out two endpoints.
func TestServerWriters(t *testing.T) {
	for _, ok := range []bool{true, false} {
		p, err := ReadPDU(bytes.NewReader(BindAck(1, ok, "135")), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := ParseBindReply(p); err != nil || res.Accepted != ok {
			t.Fatalf("bind_ack accepted=%v read as %v, %v", ok, res, err)
		}
	}
	eps := []Endpoint{{Interface: EMSMDB, Protocol: protoTCP, Port: 6001, Addr: netip.MustParseAddr("10.0.0.11")},
		{Interface: NSPI, Protocol: protoTCP, Port: 6002, Addr: netip.MustParseAddr("10.0.0.11")}}
	var w Watch
	w.FromClient(Request(2, OpMap, MapRequest(EMSMDB)))
	got := w.FromServer(Response(2, MapResponse(4, eps)))
	if len(got) != 2 || got[0] != eps[0] || got[1] != eps[1] {
		t.Fatalf("learned %v, want %v", got, eps)
	}
	res, err := ParseMapResponse(MapResponse(4, nil), binary.LittleEndian)
	if err != nil || res.Status != EptNotRegistered {
		t.Fatalf("no endpoint: %+v, %v", res, err)
	}
}

// The towers array is sized by the client's max_towers, as Samba sizes
// it (its captured answers carry max count 4 for impacket's 4, with 1
// tower or none), and holds no more towers than that; an answer whose
// count passes its own max count is malformed.
func TestMapResponseSizedByMaxTowers(t *testing.T) {
	eps := []Endpoint{{Interface: EMSMDB, Protocol: protoTCP, Port: 6001}, {Interface: EMSMDB, Protocol: protoTCP, Port: 6002}}
	for _, max := range []uint32{1, 2, 4, 500} {
		stub := MapResponse(max, eps)
		if got := binary.LittleEndian.Uint32(stub[24:]); got != max {
			t.Fatalf("max_towers %d: array max count %d", max, got)
		}
		res, err := ParseMapResponse(stub, binary.LittleEndian)
		if want := min(int(max), len(eps)); err != nil || len(res.Ports) != want {
			t.Fatalf("max_towers %d: %+v, %v; want %d ports", max, res, err, want)
		}
	}
	forged := MapResponse(2, eps)
	binary.LittleEndian.PutUint32(forged[24:], 1)
	if _, err := ParseMapResponse(forged, binary.LittleEndian); !errors.Is(err, ErrMalformed) {
		t.Fatalf("2 towers in an array of 1: %v, want ErrMalformed", err)
	}
	for _, f := range []string{"samba-map-lsarpc.bin", "samba-map-emsmdb.bin"} {
		b, _ := os.ReadFile("testdata/" + f)
		stub, _, err := ReadResponse(bytes.NewReader(b), 2)
		if err != nil || len(stub) < 28 {
			t.Fatalf("%s: %v", f, err)
		}
		if got := binary.LittleEndian.Uint32(stub[24:]); got != 4 {
			t.Fatalf("%s: max count %d; Samba sizes the array by max_towers 4", f, got)
		}
	}
}
