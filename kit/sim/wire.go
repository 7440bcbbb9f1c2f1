// Package sim simulates both ends of Cisco Unity's MAPI traffic to an
// Exchange 2010 CAS array, over real DCE/RPC framing (ncacn_ip_tcp, with
// package dcerpc) whose request stubs carry a small protocol of its own
// that keeps what matters to affinity (see docs/lab-protocol.md): a CAS
// whose endpoint mapper hands out the ports of EMSMDB and NSPI, that
// holds logon sessions in its own memory and answers
// MAPI_E_NETWORK_ERROR (0x80040115) for a handle it does not hold, and a
// Unity-like client fleet that asks the endpoint mapper for each
// interface's port, binds there, logs on, and works over fresh and
// long-lived connections on both service ports. Both ends run against
// any address, so they measure a real balancer as well as stickylb, and
// a balancer that reads DCE/RPC (stickylb's inspect_dcerpc) reads them
// as it reads Exchange.
//
// It is part of the lab and benchmark kit (kit/), which no runtime package
// imports.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types. Requests have the high bit clear, replies set. (Type 0x01
// and its reply 0x81, the lookup of the service ports, are DCE/RPC's
// ept_map now.)
const (
	TypeLogon      byte = 0x02 // RPC Client Access: open a session
	TypeOp         byte = 0x03 // either service port: work in a session
	TypeLogoff     byte = 0x04 // end a session
	TypeLogonOK    byte = 0x82 // reply to Logon
	TypeOpOK       byte = 0x83 // reply to Op
	TypeLogoffOK   byte = 0x84 // reply to Logoff
	TypeError      byte = 0x8F // error reply; the connection may close after it
	magic0, magic1      = 'M', 'A'
	headerLen           = 5
	// MaxPayload bounds a frame; a longer length field is a protocol error.
	MaxPayload = 4096
)

// Status codes, as Unity logs them.
const (
	MAPINetworkError uint32 = 0x80040115 // MAPI_E_NETWORK_ERROR: the server does not know the session
	MAPICallFailed   uint32 = 0x80004005 // MAPI_E_CALL_FAILED: malformed request
	MAPILogonFailed  uint32 = 0x80040111 // MAPI_E_LOGON_FAILED: bad logon
)

// Frame is one protocol message: 'M' 'A', a type byte, a big-endian
// uint16 payload length, and the payload. It travels as the stub of a
// DCE/RPC request or response (rpc.go).
type Frame struct {
	Type    byte
	Payload []byte
}

// ErrProtocol marks malformed input from the network.
var ErrProtocol = errors.New("protocol error")

// ReadFrame reads one frame, reusing buf for the payload when it is large
// enough. Every malformation is an error wrapping ErrProtocol; io.EOF
// means the peer closed cleanly between frames.
func ReadFrame(r io.Reader, buf []byte) (Frame, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("%w: truncated header", ErrProtocol)
		}
		return Frame{}, err
	}
	if h[0] != magic0 || h[1] != magic1 {
		return Frame{}, fmt.Errorf("%w: bad magic %#02x%02x", ErrProtocol, h[0], h[1])
	}
	n := int(binary.BigEndian.Uint16(h[3:]))
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrProtocol, n, MaxPayload)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Frame{}, fmt.Errorf("%w: truncated payload: %w", ErrProtocol, err)
	}
	return Frame{Type: h[2], Payload: buf}, nil
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, f Frame) []byte {
	b = append(b, magic0, magic1, f.Type)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.Payload)))
	return append(b, f.Payload...)
}

// WriteFrame writes f in one write.
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxPayload {
		return fmt.Errorf("frame payload %d bytes exceeds %d", len(f.Payload), MaxPayload)
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, headerLen+len(f.Payload)), f))
	return err
}

// ErrorFrame builds an error reply: status, then the server name and a
// message, each length-prefixed by one byte.
func ErrorFrame(status uint32, server, msg string) Frame {
	p := binary.BigEndian.AppendUint32(nil, status)
	p = appendStr(p, server)
	p = appendStr(p, msg)
	return Frame{Type: TypeError, Payload: p}
}

func appendStr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	return append(append(b, byte(len(s))), s...)
}

// readStr reads a one-byte-length-prefixed string from p.
func readStr(p []byte) (string, []byte, error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, fmt.Errorf("%w: short string", ErrProtocol)
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], nil
}

// StatusError is an error reply from a server.
type StatusError struct {
	Status uint32
	Server string
	Msg    string
	// Fault is the DCE/RPC fault the status stands for, if it came as
	// a fault PDU (rpcclient.go) rather than an error reply; Server is
	// then unknown.
	Fault uint32
}

func (e *StatusError) Error() string {
	name := ""
	switch e.Status {
	case MAPINetworkError:
		name = "MAPI_E_NETWORK_ERROR "
	case MAPICallFailed:
		name = "MAPI_E_CALL_FAILED "
	case MAPILogonFailed:
		name = "MAPI_E_LOGON_FAILED "
	}
	if e.Fault != 0 {
		return fmt.Sprintf("%s(%#08x): DCE/RPC fault %#08x: %s", name, e.Status, e.Fault, e.Msg)
	}
	return fmt.Sprintf("%s(%#08x) from %s: %s", name, e.Status, e.Server, e.Msg)
}

// ParseError decodes an error frame's payload.
func ParseError(p []byte) (*StatusError, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: short error frame", ErrProtocol)
	}
	e := &StatusError{Status: binary.BigEndian.Uint32(p)}
	var err error
	rest := p[4:]
	if e.Server, rest, err = readStr(rest); err != nil {
		return nil, err
	}
	if e.Msg, _, err = readStr(rest); err != nil {
		return nil, err
	}
	return e, nil
}
