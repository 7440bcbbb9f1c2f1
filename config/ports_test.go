package config

import "testing"

// Without splits the ranges around the ports it leaves out.
func TestPortsWithout(t *testing.T) {
	ps := Ports{{135, 135}, {6005, 6010}}
	for _, c := range []struct {
		out  []uint16
		want string
	}{
		{nil, "135,6005-6010"}, {[]uint16{135}, "6005-6010"}, {[]uint16{6005, 6010}, "135,6006-6009"},
		{[]uint16{6007, 9090}, "135,6005-6006,6008-6010"}, {[]uint16{6005, 6006, 6007, 6008, 6009, 6010}, "135"},
	} {
		if got := ps.Without(c.out).String(); got != c.want {
			t.Errorf("%s without %v = %s, want %s", ps, c.out, got, c.want)
		}
	}
}
