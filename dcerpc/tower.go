package dcerpc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Endpoint is one protocol tower as ept_map answers it: the interface
// it is for and where that interface is served (C706 appendix L).
type Endpoint struct {
	// Interface is floor 1: the interface's UUID and version.
	Interface Syntax
	// Protocol is the transport floor's protocol id: 0x07 (TCP) for
	// ncacn_ip_tcp, 0 if the tower has none.
	Protocol byte
	// Port is the transport floor's port (big-endian on the wire).
	Port uint16
	// Addr is the IPv4 floor's address; the zero Addr when the tower
	// has none. Servers often write 0.0.0.0 here: a client then uses the
	// address it asked the endpoint mapper at.
	Addr netip.Addr
}

// TCP reports whether the tower is ncacn_ip_tcp with a port.
func (e Endpoint) TCP() bool { return e.Protocol == protoTCP && e.Port != 0 }

func (e Endpoint) String() string {
	return fmt.Sprintf("%s at %s port %d", e.Interface, e.Addr, e.Port)
}

// ParseTower reads a tower's floors. Floors are little-endian whatever
// the stream's byte order; the port and address are big-endian. At most
// maxFloors floors are read; a tower of more is malformed.
func ParseTower(t []byte) (Endpoint, error) {
	var e Endpoint
	if len(t) < 2 {
		return e, fmt.Errorf("%w: tower of %d bytes", ErrMalformed, len(t))
	}
	floors, off := int(binary.LittleEndian.Uint16(t)), 2
	if floors == 0 || floors > maxFloors {
		return e, fmt.Errorf("%w: tower of %d floors", ErrMalformed, floors)
	}
	for i := range floors {
		lhs, rhs, next, err := floor(t, off)
		if err != nil {
			return Endpoint{}, fmt.Errorf("%w: tower floor %d: %w", ErrMalformed, i+1, err)
		}
		off = next
		switch {
		case i == 0 && lhs[0] == protoUUID && len(lhs) == 19 && len(rhs) == 2:
			e.Interface = Syntax{UUID: uuidNDR(lhs[1:17]), Major: binary.LittleEndian.Uint16(lhs[17:]),
				Minor: binary.LittleEndian.Uint16(rhs)}
		case lhs[0] == protoTCP && len(rhs) == 2:
			e.Protocol, e.Port = protoTCP, binary.BigEndian.Uint16(rhs)
		case lhs[0] == protoIP && len(rhs) == 4:
			e.Addr = netip.AddrFrom4([4]byte(rhs))
		}
	}
	return e, nil
}

// floor splits the floor at off into its left and right sides and
// returns the offset of the next floor.
func floor(t []byte, off int) (lhs, rhs []byte, next int, err error) {
	if off+2 > len(t) {
		return nil, nil, 0, fmt.Errorf("cut short at %d bytes", off)
	}
	ln := int(binary.LittleEndian.Uint16(t[off:]))
	if ln == 0 || off+2+ln+2 > len(t) {
		return nil, nil, 0, fmt.Errorf("left side of %d bytes in a tower of %d", ln, len(t))
	}
	lhs = t[off+2 : off+2+ln]
	off += 2 + ln
	rn := int(binary.LittleEndian.Uint16(t[off:]))
	if off+2+rn > len(t) {
		return nil, nil, 0, fmt.Errorf("right side of %d bytes in a tower of %d", rn, len(t))
	}
	return lhs, t[off+2 : off+2+rn], off + 2 + rn, nil
}

// uuidNDR reads a UUID written as NDR writes it little-endian (see
// UUID.appendNDR).
func uuidNDR(b []byte) UUID {
	var u UUID
	binary.BigEndian.PutUint32(u[0:], binary.LittleEndian.Uint32(b[0:]))
	binary.BigEndian.PutUint16(u[4:], binary.LittleEndian.Uint16(b[4:]))
	binary.BigEndian.PutUint16(u[6:], binary.LittleEndian.Uint16(b[6:]))
	copy(u[8:], b[8:16])
	return u
}

// syntaxAt reads a syntax (UUID and version) at b, in the PDU's byte
// order (C706 12.6.3.1, p_syntax_id_t).
func syntaxAt(b []byte, order binary.ByteOrder) Syntax {
	var u UUID
	binary.BigEndian.PutUint32(u[0:], order.Uint32(b[0:]))
	binary.BigEndian.PutUint16(u[4:], order.Uint16(b[4:]))
	binary.BigEndian.PutUint16(u[6:], order.Uint16(b[6:]))
	copy(u[8:], b[8:16])
	return Syntax{UUID: u, Major: order.Uint16(b[16:]), Minor: order.Uint16(b[18:])}
}

// ParseBind reads the interface a bind or alter_context offers: the
// abstract syntax of its first presentation context (C706 12.6.4.3).
func ParseBind(p PDU) (Syntax, error) {
	if p.Type != TypeBind && p.Type != TypeAlterContext {
		return Syntax{}, fmt.Errorf("%w: PDU type %d is not a bind", ErrMalformed, p.Type)
	}
	b := p.Body
	// max_xmit, max_recv, assoc_group, n_context_elem and 3 reserved;
	// then p_cont_id, n_transfer_syn, reserved, abstract_syntax.
	if len(b) < 12+4+20 || b[8] == 0 {
		return Syntax{}, fmt.Errorf("%w: bind of %d bytes without a context", ErrMalformed, len(b))
	}
	return syntaxAt(b[16:], p.Order), nil
}

// Opnum is the operation a request PDU calls (C706 12.6.4.9).
func Opnum(p PDU) (uint16, error) {
	if p.Type != TypeRequest || len(p.Body) < 8 {
		return 0, fmt.Errorf("%w: not a request (type %d, %d bytes)", ErrMalformed, p.Type, len(p.Body))
	}
	return p.Order.Uint16(p.Body[6:]), nil
}
