// Package capture reads packet captures (pcap or pcapng, in pure Go) taken
// where client addresses are visible (on a client, behind a balancer that
// keeps them such as Windows NLB, or on a transparent proxy's backend
// side) and reports, for each client address, which backends its TCP
// connections reached and when, flagging every client that was split
// across backends: the check Cisco asks engineers to make with a packet
// sniffer, automated.
//
// It is part of the lab and benchmark kit (kit/), which no runtime package
// imports.
package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Options narrow what counts as a connection to a backend.
type Options struct {
	// Ports: only connections to these server ports count (the pool's
	// ports, such as 135, 60001, 60002). Empty: every port.
	Ports []uint16
	// Backends: only connections to these addresses count. Empty: every
	// address that accepts a connection.
	Backends []netip.Addr
	// Balancers: connections from these addresses are a balancer's own
	// (health checks, on a capture taken on a CAS behind a transparent
	// stickylb) and are left out of the per-client verdicts.
	Balancers []netip.Addr
}

// Visit is a client's connections to one backend.
type Visit struct {
	Backend string    `json:"backend"`
	Ports   []uint16  `json:"ports"`
	Flows   int       `json:"connections"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// Client is one client address's story.
type Client struct {
	Client string  `json:"client"`
	Visits []Visit `json:"backends"`
	Split  bool    `json:"split"`
}

// Report is what a capture shows.
type Report struct {
	Packets int      `json:"packets"`
	Skipped int      `json:"skipped_packets"` // not IP/TCP, or undecodable
	Flows   int      `json:"connections"`
	Split   int      `json:"split_clients"`
	Clients []Client `json:"clients"`
	// LeftOut counts connections kept out of the verdicts: from a
	// Balancers address, or from a source that never sent a byte on any
	// of its connections (a health check that only connects), listed in
	// Probers.
	LeftOut int      `json:"left_out_connections"`
	Probers []string `json:"left_out_sources,omitempty"`
}

type reader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// Analyze reads a capture and reports. A file that is neither pcap nor
// pcapng, or is cut short in a header, is an error; packets it cannot
// decode are counted and skipped.
func Analyze(r io.Reader, opts Options) (*Report, error) {
	pr, err := open(r)
	if err != nil {
		return nil, err
	}
	type flow struct{ src, dst netip.AddrPort }
	seen := map[flow]bool{}
	visits := map[netip.Addr]map[netip.Addr]*Visit{}
	rep := &Report{}
	sent := map[netip.Addr]bool{} // sources that sent payload
	rep.Packets, rep.Skipped, err = scan(pr, func(p packet) {
		if p.size > 0 {
			sent[p.src.Addr()] = true
		}
		// A connection is its SYN; without SYNs (a capture started mid
		// stream) the first packet towards a listed port stands for it.
		isOpen := p.tcp.SYN && !p.tcp.ACK
		if !isOpen && len(opts.Ports) == 0 {
			return
		}
		if len(opts.Ports) > 0 && !slices.Contains(opts.Ports, p.dst.Port()) {
			return
		}
		if len(opts.Backends) > 0 && !slices.Contains(opts.Backends, p.dst.Addr()) {
			return
		}
		f := flow{p.src, p.dst}
		if seen[f] && !isOpen {
			return
		}
		seen[f] = true
		rep.Flows++
		src, dst := p.src.Addr(), p.dst.Addr()
		if slices.Contains(opts.Balancers, src) {
			rep.LeftOut++
			return
		}
		m := visits[src]
		if m == nil {
			m = map[netip.Addr]*Visit{}
			visits[src] = m
		}
		v := m[dst]
		if v == nil {
			v = &Visit{Backend: dst.String(), First: p.at}
			m[dst] = v
		}
		v.Flows++
		v.Last = p.at
		if !slices.Contains(v.Ports, p.dst.Port()) {
			v.Ports = append(v.Ports, p.dst.Port())
			slices.Sort(v.Ports)
		}
	})
	return rep.finish(visits, sent), err
}

// open recognises a pcap or pcapng stream and returns its packet reader.
func open(r io.Reader) (reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	var pr reader
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		pr, err = pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
	} else {
		pr, err = pcapgo.NewReader(br)
	}
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng capture: %w", err)
	}
	return pr, nil
}

// packet is one TCP segment of a capture.
type packet struct {
	at       time.Time
	src, dst netip.AddrPort
	tcp      *layers.TCP
	size     int // payload bytes on the wire, even where the capture cut the packet short
}

// scan calls fn for every TCP packet over IPv4 or IPv6 and returns how
// many packets it read and how many it skipped (not IP/TCP, or
// undecodable). The error says where a capture was cut short.
func scan(pr reader, fn func(packet)) (packets, skipped int, err error) {
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return packets, skipped, nil
		}
		if err != nil {
			return packets, skipped, fmt.Errorf("capture cut short after %d packets: %w", packets, err)
		}
		packets++
		p := gopacket.NewPacket(data, pr.LinkType(), gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		var src, dst netip.Addr
		var ipPayload int
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
			ipPayload = int(ip.Length) - int(ip.IHL)*4
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
			ipPayload = int(ip.Length)
		default:
			skipped++
			continue
		}
		tcp, ok := p.TransportLayer().(*layers.TCP)
		if !ok {
			skipped++
			continue
		}
		fn(packet{at: ci.Timestamp, src: netip.AddrPortFrom(src, uint16(tcp.SrcPort)), dst: netip.AddrPortFrom(dst, uint16(tcp.DstPort)),
			tcp: tcp, size: max(ipPayload-int(tcp.DataOffset)*4, 0)})
	}
}

// finish turns the visits into per-client verdicts. Where clients sent
// data, a source that never sent a byte on any connection is left out: a
// TCP health check connects and closes, and on a CAS behind a transparent
// balancer it comes from the balancer's own address, to every CAS, which
// would read as a split client. A capture with no client data at all
// (SYNs only, or a server that speaks first) leaves everyone in.
func (rep *Report) finish(visits map[netip.Addr]map[netip.Addr]*Visit, sent map[netip.Addr]bool) *Report {
	anySent := false
	for client := range visits {
		anySent = anySent || sent[client]
	}
	for client, m := range visits {
		if anySent && !sent[client] {
			for _, v := range m {
				rep.LeftOut += v.Flows
			}
			rep.Probers = append(rep.Probers, client.String())
			continue
		}
		c := Client{Client: client.String(), Split: len(m) > 1}
		for _, v := range m {
			c.Visits = append(c.Visits, *v)
		}
		sort.Slice(c.Visits, func(i, j int) bool { return c.Visits[i].First.Before(c.Visits[j].First) })
		if c.Split {
			rep.Split++
		}
		rep.Clients = append(rep.Clients, c)
	}
	slices.Sort(rep.Probers)
	sort.Slice(rep.Clients, func(i, j int) bool {
		if rep.Clients[i].Split != rep.Clients[j].Split {
			return rep.Clients[i].Split
		}
		return rep.Clients[i].Client < rep.Clients[j].Client
	})
	return rep
}
