package affinity

import (
	"encoding/binary"
	"errors"
)

// The binary form of a key, for members of a cluster: a flag byte (1: an
// IPv4 key), the prefix length, the port (big-endian) and the address, 4
// bytes for IPv4 and 16 otherwise. 8 bytes for the common IPv4 key.

// AppendBinary appends the key's binary form to b.
func (k Key) AppendBinary(b []byte) ([]byte, error) {
	if k.v4 {
		b = append(b, 1, k.bits)
		b = binary.BigEndian.AppendUint16(b, k.port)
		return append(b, k.ip[12:]...), nil
	}
	b = append(b, 0, k.bits)
	b = binary.BigEndian.AppendUint16(b, k.port)
	return append(b, k.ip[:]...), nil
}

var errShortKey = errors.New("client key: truncated or malformed")

// ReadKey reads a key in its binary form from the front of b and returns
// it with the number of bytes it took.
func ReadKey(b []byte) (Key, int, error) {
	if len(b) < 4 || b[0] > 1 {
		return Key{}, 0, errShortKey
	}
	k := Key{v4: b[0] == 1, bits: b[1], port: binary.BigEndian.Uint16(b[2:4])}
	switch {
	case k.v4 && len(b) >= 8 && k.bits <= 32:
		k.ip[10], k.ip[11] = 0xff, 0xff
		copy(k.ip[12:], b[4:8])
		return k, 8, nil
	case !k.v4 && len(b) >= 20 && k.bits <= 128:
		copy(k.ip[:], b[4:20])
		return k, 20, nil
	}
	return Key{}, 0, errShortKey
}
