package capture

import (
	"io"
	"slices"
	"time"
)

// Step is how long a balancer took over one step of a connection, across
// every connection of a capture that had it.
type Step struct {
	Name   string        `json:"step"`
	Count  int           `json:"count"`
	Median time.Duration `json:"median"`
	P90    time.Duration `json:"p90"`
}

// The steps, in a connection's order, of the bench tool's short load
// (connect, read the backend's greeting, echo, close):
//   - accept+dial: the client's SYN to the balancer's SYN to a backend
//     (accepting, choosing, dialling);
//   - greeting down: the backend's first data to the balancer passing it
//     on to the client;
//   - echo up: the client's first data to the balancer sending it on;
//   - echo down: the backend's answer to the balancer passing it on;
//   - FIN up: the client's FIN to the balancer's FIN to the backend.
var stepNames = []string{"accept+dial", "greeting down", "echo up", "echo down", "FIN up"}

// Steps reads a loopback capture of both legs of a balancer, its
// listening port port and its backends' port backendPort, and times the
// steps above from the kernel's packet timestamps, so the load
// generator's own delays are not in them. Connections must not overlap
// (one client connection at a time): a packet is matched to the
// connection whose client SYN came last.
func Steps(r io.Reader, port, backendPort uint16) ([]Step, error) {
	pr, err := open(r)
	if err != nil {
		return nil, err
	}
	const (
		clientSYN = iota
		backendSYN
		greeting
		greetingSent
		echo
		echoSent
		answer
		answerSent
		clientFIN
		finSent
		events
	)
	var (
		seen   [events]bool
		when   [events]time.Time
		taken  = make([][]time.Duration, len(stepNames))
		inConn bool
	)
	mark := func(e int, at time.Time) bool {
		if seen[e] {
			return false
		}
		seen[e], when[e] = true, at
		return true
	}
	// step records event e, which ends step s begun by event from.
	step := func(s, from, e int, at time.Time) {
		if seen[from] && mark(e, at) {
			taken[s] = append(taken[s], at.Sub(when[from]))
		}
	}
	_, _, err = scan(pr, func(p packet) {
		toLB, fromLB := p.dst.Port() == port, p.src.Port() == port
		toBackend, fromBackend := p.dst.Port() == backendPort, p.src.Port() == backendPort
		syn := p.tcp.SYN && !p.tcp.ACK
		if toLB && syn {
			seen = [events]bool{}
			mark(clientSYN, p.at)
			inConn = true
			return
		}
		if !inConn {
			return
		}
		switch {
		case toBackend && syn:
			step(0, clientSYN, backendSYN, p.at)
		case fromBackend && p.size > 0 && !seen[greeting]:
			mark(greeting, p.at)
		case fromLB && p.size > 0 && !seen[greetingSent]:
			step(1, greeting, greetingSent, p.at)
		case toLB && p.size > 0 && !seen[echo]:
			mark(echo, p.at)
		case toBackend && p.size > 0 && seen[echo]:
			step(2, echo, echoSent, p.at)
		case fromBackend && p.size > 0 && seen[echoSent] && !seen[answer]:
			mark(answer, p.at)
		case fromLB && p.size > 0 && seen[answer]:
			step(3, answer, answerSent, p.at)
		case toLB && p.tcp.FIN && !seen[clientFIN]:
			mark(clientFIN, p.at)
		case toBackend && p.tcp.FIN:
			step(4, clientFIN, finSent, p.at)
		}
	})
	steps := make([]Step, 0, len(stepNames))
	for i, name := range stepNames {
		d := taken[i]
		s := Step{Name: name, Count: len(d)}
		if len(d) > 0 {
			slices.Sort(d)
			s.Median, s.P90 = d[len(d)/2], d[len(d)*9/10]
		}
		steps = append(steps, s)
	}
	return steps, err
}
