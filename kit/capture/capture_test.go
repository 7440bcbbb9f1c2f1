package capture

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type pkt struct {
	src, dst     string
	sport, dport uint16
	syn, ack     bool
	at           time.Duration
}

func frame(t *testing.T, p pkt) []byte {
	return segment(t, p.src, p.dst, p.sport, p.dport, &layers.TCP{SYN: p.syn, ACK: p.ack}, 0)
}

// segment builds an Ethernet/IPv4/TCP frame with flags from tcp and
// payload bytes of data.
func segment(t *testing.T, src, dst string, sport, dport uint16, tcp *layers.TCP, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	tcp.SrcPort, tcp.DstPort, tcp.Window = layers.TCPPort(sport), layers.TCPPort(dport), 65535
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(make([]byte, payload))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The capture an engineer takes behind Windows NLB during a convergence:
// client 10.1.1.5 keeps to cas1 on all three ports; client 10.1.1.9 starts
// on cas1 and is then sent to cas2.
var traffic = []pkt{
	{"10.1.1.5", "10.0.0.11", 50001, 135, true, false, 0},
	{"10.0.0.11", "10.1.1.5", 135, 50001, true, true, time.Millisecond},
	{"10.1.1.5", "10.0.0.11", 50002, 60001, true, false, time.Second},
	{"10.1.1.5", "10.0.0.11", 50003, 60002, true, false, 2 * time.Second},
	{"10.1.1.9", "10.0.0.11", 40001, 135, true, false, 0},
	{"10.1.1.9", "10.0.0.11", 40002, 60001, true, false, time.Second},
	{"10.1.1.9", "10.0.0.12", 40003, 60002, true, false, 3 * time.Second},
	{"10.1.1.9", "10.0.0.12", 40003, 60002, false, true, 3*time.Second + time.Millisecond},
}

func write(t *testing.T, ng bool) []byte {
	var b bytes.Buffer
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var w interface {
		WritePacket(gopacket.CaptureInfo, []byte) error
	}
	if ng {
		nw, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		defer nw.Flush()
		w = nw
	} else {
		pw := pcapgo.NewWriter(&b)
		pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
		w = pw
	}
	for _, p := range traffic {
		data := frame(t, p)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: start.Add(p.at), CaptureLength: len(data), Length: len(data)}, data)
	}
	if nw, ok := w.(*pcapgo.NgWriter); ok {
		nw.Flush()
	}
	return b.Bytes()
}

// In pcap and pcapng alike, a client whose connections reached two
// backends is reported split and a sticky one is not.
func TestSplitClientFound(t *testing.T) {
	for _, ng := range []bool{false, true} {
		rep, err := Analyze(bytes.NewReader(write(t, ng)), Options{})
		if err != nil {
			t.Fatalf("pcapng=%v: %v", ng, err)
		}
		if rep.Packets != 8 || rep.Flows != 6 || rep.Split != 1 || len(rep.Clients) != 2 {
			t.Fatalf("pcapng=%v: %+v", ng, rep)
		}
		split := rep.Clients[0]
		if split.Client != "10.1.1.9" || !split.Split || len(split.Visits) != 2 ||
			split.Visits[0].Backend != "10.0.0.11" || split.Visits[1].Backend != "10.0.0.12" || split.Visits[1].Ports[0] != 60002 {
			t.Fatalf("pcapng=%v: split client %+v", ng, split)
		}
		ok := rep.Clients[1]
		if ok.Split || len(ok.Visits) != 1 || len(ok.Visits[0].Ports) != 3 || ok.Visits[0].Flows != 3 {
			t.Fatalf("pcapng=%v: sticky client %+v", ng, ok)
		}
	}
}

// A port filter still finds flows whose SYNs the capture missed.
func TestPortFilterWithoutSYNs(t *testing.T) {
	// Only port 60002, where the capture also has a mid-stream packet.
	rep, err := Analyze(bytes.NewReader(write(t, false)), Options{Ports: []uint16{60002}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 2 || rep.Split != 0 {
		t.Fatalf("%+v", rep)
	}
}

// A file that is not a capture is an error, and a truncated one gives
// what was read with an error saying it was cut short.
func TestBadFiles(t *testing.T) {
	if _, err := Analyze(strings.NewReader("not a capture at all"), Options{}); err == nil || !strings.Contains(err.Error(), "not a pcap") {
		t.Fatalf("garbage: %v", err)
	}
	good := write(t, false)
	rep, err := Analyze(bytes.NewReader(good[:len(good)-20]), Options{})
	if err == nil || rep == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("truncated: %v", err)
	}
}

// No bytes read as a capture crash the analysis.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00"))
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		Analyze(bytes.NewReader(data), Options{})
	})
}

// A --balancer address's connections are left out of the verdicts and
// counted; a capture of SYNs only (no client sent a byte) leaves every
// source in, since there a silent source is no sign of a health check.
func TestBalancerFlowsLeftOut(t *testing.T) {
	rep, err := Analyze(bytes.NewReader(write(t, false)), Options{Balancers: []netip.Addr{netip.MustParseAddr("10.1.1.9")}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Split != 0 || len(rep.Clients) != 1 || rep.LeftOut != 3 || rep.Clients[0].Client != "10.1.1.5" {
		t.Fatalf("with 10.1.1.9 as the balancer: %+v", rep)
	}
	rep, _ = Analyze(bytes.NewReader(write(t, false)), Options{})
	if rep.LeftOut != 0 || len(rep.Probers) != 0 {
		t.Fatalf("a SYN-only capture left sources out: %+v", rep)
	}
}
