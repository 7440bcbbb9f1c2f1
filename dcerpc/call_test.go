package dcerpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// impacket-bind-epm.bin and impacket-map-emsmdb.bin are what impacket
// 0.10's epm.hept_map sent an endpoint mapper for EMSMDB (recorded on
// loopback): the bind of the endpoint mapper, then ept_map with a
// non-null obj and max_towers 1. The server's readers read another
// stack's encoding, not only this package's own.
func TestParseImpacketsRequest(t *testing.T) {
	iface, err := ParseBind(read(t, "impacket-bind-epm.bin"))
	if err != nil || iface != EPM {
		t.Fatalf("impacket's bind offers %v, %v; want %v", iface, err, EPM)
	}
	p := read(t, "impacket-map-emsmdb.bin")
	call, whole, err := ParseRequest(p)
	if err != nil || !whole || call.Opnum != OpMap || call.ContextID != 0 {
		t.Fatalf("impacket's ept_map: %+v whole %v, %v", call, whole, err)
	}
	args, err := ParseMapRequest(call.Stub, p.Order)
	if err != nil || args.Tower.Interface != EMSMDB || args.Tower.Protocol != protoTCP || args.MaxTowers != 1 {
		t.Fatalf("impacket's ept_map arguments: %+v, %v", args, err)
	}
}

// This package's own ept_map reads back, and so does one with a null
// obj pointer; a request with an object UUID gives the stub after it,
// and a fragment of a longer request says it is not the whole call.
func TestParseRequestShapes(t *testing.T) {
	args, err := ParseMapRequest(MapRequest(NSPI), binary.LittleEndian)
	if err != nil || args.Tower.Interface != NSPI || args.MaxTowers != maxTowers {
		t.Fatalf("MapRequest(NSPI) read as %+v, %v", args, err)
	}
	nullObj := append(binary.LittleEndian.AppendUint32(nil, 0), MapRequest(EMSMDB)[20:]...)
	if args, err := ParseMapRequest(nullObj, binary.LittleEndian); err != nil || args.Tower.Interface != EMSMDB {
		t.Fatalf("ept_map with a null obj: %+v, %v", args, err)
	}
	req := Request(7, 11, []byte("stub"))
	p, err := ReadPDU(bytes.NewReader(req), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, whole, err := ParseRequest(p); err != nil || !whole || c.Opnum != 11 || string(c.Stub) != "stub" {
		t.Fatalf("request: %+v %v %v", c, whole, err)
	}
	withObj := Request(7, 11, append(make([]byte, 16), "stub"...))
	withObj[3] |= flagObjectUUID
	withObj[3] &^= flagLastFrag
	p, _ = ReadPDU(bytes.NewReader(withObj), nil)
	if c, whole, err := ParseRequest(p); err != nil || whole || string(c.Stub) != "stub" {
		t.Fatalf("first fragment with an object UUID: %+v %v %v", c, whole, err)
	}
}

// Every cut of a good ept_map request is an error, never a panic, and a
// fault PDU reads back as its status.
func TestParseMapRequestCut(t *testing.T) {
	good := MapRequest(EMSMDB)
	for i := range good {
		if _, err := ParseMapRequest(good[:i], binary.LittleEndian); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d of %d: %v", i, len(good), err)
		}
	}
	_, _, err := ReadResponse(bytes.NewReader(FaultPDU(2, FaultOpRange)), 2)
	if f, ok := err.(Fault); !ok || f != FaultOpRange {
		t.Fatalf("fault read as %v", err)
	}
}

// FuzzRequest feeds arbitrary bytes to the server's readers: as a
// request PDU, its stub as ept_map's arguments in both byte orders. A
// call's stub lies within the PDU it came from.
func FuzzRequest(f *testing.F) {
	for _, name := range []string{"impacket-map-emsmdb.bin", "impacket-bind-epm.bin"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ReadPDU(bytes.NewReader(b), nil); err == nil {
			if c, _, err := ParseRequest(p); err == nil {
				if len(c.Stub) > len(p.Body) {
					t.Fatalf("stub of %d bytes from a body of %d", len(c.Stub), len(p.Body))
				}
				ParseMapRequest(c.Stub, p.Order)
			}
			ParseBind(p)
		}
		ParseMapRequest(b, binary.LittleEndian)
		ParseMapRequest(b, binary.BigEndian)
	})
}
