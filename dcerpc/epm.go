package dcerpc

import (
	"encoding/binary"
	"fmt"
)

// OpMap is ept_map's operation number in the endpoint mapper interface
// (C706 appendix O; MS-RPCE 2.2.1.2.5).
const OpMap = 3

// EptNotRegistered is the status ept_map returns for an interface no
// server has registered (C706 appendix E, ept_s_not_registered).
const EptNotRegistered = 0x16c9a0d6

// Protocol identifiers of tower floors (C706 appendix I).
const (
	protoUUID  = 0x0d
	protoCO    = 0x0b // connection-oriented RPC
	protoTCP   = 0x07
	protoIP    = 0x09
	maxTowers  = 4
	maxFloors  = 16
	towerFloor = 5
)

// Tower encodes the protocol tower for iface over ncacn_ip_tcp with an
// unspecified port and address, as a client asks ept_map with
// (C706 appendix L).
func Tower(iface Syntax) []byte { return Endpoint{Interface: iface}.Tower() }

// Tower encodes e as a protocol tower over ncacn_ip_tcp: the interface,
// NDR, connection-oriented RPC, TCP with e's port, IP with e's address
// (0.0.0.0 if it has none).
func (e Endpoint) Tower() []byte {
	b := binary.LittleEndian.AppendUint16(nil, towerFloor)
	floor := func(lhs, rhs []byte) {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(lhs)))
		b = append(b, lhs...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(rhs)))
		b = append(b, rhs...)
	}
	for _, s := range []Syntax{e.Interface, NDR} {
		lhs := s.UUID.appendNDR([]byte{protoUUID})
		floor(binary.LittleEndian.AppendUint16(lhs, s.Major), binary.LittleEndian.AppendUint16(nil, s.Minor))
	}
	floor([]byte{protoCO}, []byte{0, 0})
	floor([]byte{protoTCP}, binary.BigEndian.AppendUint16(nil, e.Port))
	addr := [4]byte{}
	if e.Addr.Is4() {
		addr = e.Addr.As4()
	}
	floor([]byte{protoIP}, addr[:])
	return b
}

// MapRequest is the NDR stub of ept_map(obj = nil UUID, map_tower =
// Tower(iface), entry_handle = 0, max_towers = 4).
func MapRequest(iface Syntax) []byte {
	t := Tower(iface)
	b := binary.LittleEndian.AppendUint32(nil, 1)           // obj: referent
	b = append(b, make([]byte, 16)...)                      // the nil UUID
	b = binary.LittleEndian.AppendUint32(b, 2)              // map_tower: referent
	b = binary.LittleEndian.AppendUint32(b, uint32(len(t))) // conformance (max count)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(t))) // tower_length
	b = append(b, t...)                                     // tower_octet_string
	b = append(b, make([]byte, pad4(len(t)))...)            // align
	b = append(b, make([]byte, 20)...)                      // entry_handle: a nil context handle
	return binary.LittleEndian.AppendUint32(b, maxTowers)   // max_towers
}

// MapResult is what ept_map answered: the status, the TCP ports of the
// towers it returned, and every tower it could read.
type MapResult struct {
	Status    uint32
	Ports     []uint16
	Endpoints []Endpoint
}

// ParseMapResponse reads ept_map's response stub: entry_handle,
// num_towers, the conformant varying array of tower pointers with the
// towers behind them, and the status.
func ParseMapResponse(stub []byte, order binary.ByteOrder) (MapResult, error) {
	r := ndrReader{b: stub, order: order}
	r.skip(20) // entry_handle
	num := r.u32()
	max := r.u32()
	offset, count := r.u32(), r.u32()
	if r.err != nil || offset != 0 || count != num || count > max || count > maxTowers*16 {
		return MapResult{}, fmt.Errorf("%w: ept_map answered %d towers (array of %d, offset %d, count %d)", ErrMalformed, num, max, offset, count)
	}
	refs := make([]uint32, count)
	for i := range refs {
		refs[i] = r.u32()
	}
	var res MapResult
	for _, ref := range refs {
		if ref == 0 {
			continue
		}
		_ = r.u32() // conformance
		n := r.u32()
		t := r.take(int(n))
		r.skip(pad4(int(n)))
		if r.err != nil {
			break
		}
		if e, err := ParseTower(t); err == nil {
			res.Endpoints = append(res.Endpoints, e)
			if e.Protocol == protoTCP {
				res.Ports = append(res.Ports, e.Port)
			}
		}
	}
	res.Status = r.u32()
	if r.err != nil {
		return MapResult{}, fmt.Errorf("%w: ept_map response cut short", ErrMalformed)
	}
	return res, nil
}

// towerPort finds the TCP port floor of a tower.
func towerPort(t []byte) (uint16, bool) {
	e, err := ParseTower(t)
	return e.Port, err == nil && e.Protocol == protoTCP
}

// ndrReader reads NDR primitives, remembering the first overrun.
type ndrReader struct {
	b     []byte
	off   int
	order binary.ByteOrder
	err   error
}

func (r *ndrReader) take(n int) []byte {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		r.err = ErrMalformed
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *ndrReader) skip(n int) { r.take(n) }

func (r *ndrReader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return r.order.Uint32(b)
}
