package dcerpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// The files in testdata are answers Samba 4.17's samba-dcerpcd sent to
// this package's own Bind and MapRequest (captured in a network
// namespace): a bind_ack accepting the endpoint mapper, ept_map answers
// for lsarpc (registered, port 40101) and EMSMDB (not registered), and a
// bind of EMSMDB on lsarpc's port, rejected. They hold the decoders to a
// DCE/RPC stack nobody here wrote.
func read(t *testing.T, name string) PDU {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadPDU(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

// A real bind_ack is accepted, and a real rejection is read as one with
// its reason (abstract syntax not supported).
func TestBindReplies(t *testing.T) {
	res, err := ParseBindReply(read(t, "samba-bind-ack.bin"))
	if err != nil || !res.Accepted {
		t.Fatalf("Samba's bind_ack: %v, %v", res, err)
	}
	res, err = ParseBindReply(read(t, "samba-bind-reject.bin"))
	if err != nil || res.Accepted || res.Result != 2 || res.Reason != 1 {
		t.Fatalf("Samba's rejection: %+v, %v", res, err)
	}
}

// ept_map's answer gives the registered interface's port, and for an
// unregistered one, no tower and the not-registered status.
func TestMapResponses(t *testing.T) {
	for _, tc := range []struct {
		file   string
		status uint32
		ports  []uint16
	}{
		{"samba-map-lsarpc.bin", 0, []uint16{40101}},
		{"samba-map-emsmdb.bin", EptNotRegistered, nil},
	} {
		b, _ := os.ReadFile("testdata/" + tc.file)
		stub, order, err := ReadResponse(bytes.NewReader(b), 2)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		res, err := ParseMapResponse(stub, order)
		if err != nil || res.Status != tc.status || !slicesEqual(res.Ports, tc.ports) {
			t.Fatalf("%s: %+v, %v; want status %#x ports %v", tc.file, res, err, tc.status, tc.ports)
		}
	}
}

func slicesEqual(a, b []uint16) bool { return bytes.Equal(u16bytes(a), u16bytes(b)) }

func u16bytes(s []uint16) []byte {
	var b []byte
	for _, v := range s {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// The request carries the tower C706 appendix L describes: five floors,
// the interface's UUID in NDR order with its major version on the left
// and minor on the right, NDR, connection-oriented RPC, TCP, IP.
func TestTowerLayout(t *testing.T) {
	tw := Tower(EMSMDB)
	want := []byte{5, 0, 19, 0, 0x0d, 0x00, 0xdb, 0xf1, 0xa4, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda, 0, 0, 2, 0, 81, 0}
	if !bytes.HasPrefix(tw, want) {
		t.Fatalf("tower starts % x\nwant          % x", tw[:len(want)], want)
	}
	if port, ok := towerPort(tw); !ok || port != 0 {
		t.Fatalf("the request's own tower has port %d, %v", port, ok)
	}
	if len(tw) != 2+5*4+19+2+19+2+1+2+1+2+1+4 {
		t.Fatalf("tower of %d bytes", len(tw))
	}
}

// Cut and corrupted PDUs are errors, never panics or large allocations.
func TestMalformed(t *testing.T) {
	good, _ := os.ReadFile("testdata/samba-map-lsarpc.bin")
	for i := range good {
		if _, _, err := ReadResponse(bytes.NewReader(good[:i]), 2); err == nil {
			t.Fatalf("a response cut at %d bytes was read", i)
		}
	}
	bad := bytes.Clone(good)
	bad[0] = 4
	if _, err := ReadPDU(bytes.NewReader(bad), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 4: %v", err)
	}
	if _, err := ParseUUID("a4f1db00-ca47-1067-b31f-00dd010662dz"); err == nil {
		t.Fatal("a UUID with a z was read")
	}
	if u, _ := ParseUUID("A4F1DB00-CA47-1067-B31F-00DD010662DA"); u != EMSMDB.UUID {
		t.Fatal("upper case UUID read differently")
	}
}

// FuzzDecode feeds arbitrary bytes to every reader of the package: as a
// stream of PDUs (bind replies and responses) and as an ept_map stub. A
// response never takes more than maxFragments fragments of the largest
// size to read, nor comes to more than MaxStub.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"samba-bind-ack.bin", "samba-bind-reject.bin", "samba-map-lsarpc.bin", "samba-map-emsmdb.bin"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ReadPDU(bytes.NewReader(b), nil); err == nil {
			ParseBindReply(p)
		}
		wire := &countingReader{r: bytes.NewReader(b)}
		if stub, order, err := ReadResponse(wire, 2); err == nil {
			if len(stub) > MaxStub {
				t.Fatalf("a response of %d bytes was read", len(stub))
			}
			ParseMapResponse(stub, order)
		}
		if wire.n > maxFragments*maxFrag {
			t.Fatalf("a response took %d bytes to read", wire.n)
		}
		ParseMapResponse(b, binary.LittleEndian)
		towerPort(b)
	})
}
