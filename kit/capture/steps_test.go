package capture

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Two connections through a balancer on port 19201 to a backend on 9000,
// one after the other, with the balancer's delay at each step known.
// The capture is cut at 64 bytes a packet, as compare.sh takes it, so
// payload sizes come from the IP header, not from what was captured.
func TestSteps(t *testing.T) {
	const (
		client, lb, be = "127.10.0.1", "127.0.0.1", "127.0.0.11"
		lbPort, bePort = 19201, 9000
	)
	type seg struct {
		src, dst     string
		sport, dport uint16
		tcp          *layers.TCP
		size         int
		after        time.Duration // since the previous segment
	}
	conn := func(cport, lport uint16, scale time.Duration) []seg {
		return []seg{
			{client, lb, cport, lbPort, &layers.TCP{SYN: true}, 0, 0},
			{lb, client, lbPort, cport, &layers.TCP{SYN: true, ACK: true}, 0, 1 * time.Microsecond},
			{lb, be, lport, bePort, &layers.TCP{SYN: true}, 0, 50 * scale}, // accept+dial
			{be, lb, bePort, lport, &layers.TCP{SYN: true, ACK: true}, 0, 2 * time.Microsecond},
			{be, lb, bePort, lport, &layers.TCP{ACK: true, PSH: true}, 5, 10 * time.Microsecond},
			{lb, client, lbPort, cport, &layers.TCP{ACK: true, PSH: true}, 5, 20 * scale}, // greeting down
			{client, lb, cport, lbPort, &layers.TCP{ACK: true, PSH: true}, 64, 10 * time.Microsecond},
			{lb, be, lport, bePort, &layers.TCP{ACK: true, PSH: true}, 64, 30 * scale}, // echo up
			{be, lb, bePort, lport, &layers.TCP{ACK: true, PSH: true}, 64, 10 * time.Microsecond},
			{lb, client, lbPort, cport, &layers.TCP{ACK: true, PSH: true}, 64, 40 * scale}, // echo down
			{client, lb, cport, lbPort, &layers.TCP{ACK: true, FIN: true}, 0, 10 * time.Microsecond},
			{lb, be, lport, bePort, &layers.TCP{ACK: true, FIN: true}, 0, 60 * scale}, // FIN up
		}
	}
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	w.WriteFileHeader(64, layers.LinkTypeEthernet)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for _, s := range append(conn(40001, 50001, time.Microsecond), conn(40002, 50002, 3*time.Microsecond)...) {
		at = at.Add(s.after)
		data := segment(t, s.src, s.dst, s.sport, s.dport, s.tcp, s.size)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: min(len(data), 64), Length: len(data)}, data[:min(len(data), 64)])
	}
	steps, err := Steps(&b, lbPort, bePort)
	if err != nil {
		t.Fatal(err)
	}
	// Two samples each: the median is the larger one (index 1), as is
	// the 90th percentile. accept+dial counts from the client's SYN, one
	// microsecond before the balancer's SYN-ACK.
	want := map[string]time.Duration{"accept+dial": 151, "greeting down": 60, "echo up": 90, "echo down": 120, "FIN up": 180}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(steps), len(want), steps)
	}
	for _, s := range steps {
		if s.Count != 2 || s.Median != want[s.Name]*time.Microsecond || s.P90 != s.Median {
			t.Errorf("%s: %d samples, median %s, p90 %s; want 2, %s", s.Name, s.Count, s.Median, s.P90, want[s.Name]*time.Microsecond)
		}
	}
}

// No bytes read as a capture crash the step timer.
func FuzzSteps(f *testing.F) {
	f.Add([]byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Steps(bytes.NewReader(data), 19201, 9000)
	})
}
