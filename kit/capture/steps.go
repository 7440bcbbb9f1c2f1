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
	t := &stepTimer{port: port, backendPort: backendPort, taken: make([][]time.Duration, len(stepNames))}
	_, _, err = scan(pr, t.packet)
	return t.summary(), err
}

// The events of one connection that begin or end a step, in order.
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

// stepTimer follows one connection at a time through the events above and
// collects each step's durations.
type stepTimer struct {
	port, backendPort uint16
	seen              [events]bool
	when              [events]time.Time
	taken             [][]time.Duration // by step
	inConn            bool
}

// mark records event e at the time given, once per connection.
func (t *stepTimer) mark(e int, at time.Time) bool {
	if t.seen[e] {
		return false
	}
	t.seen[e], t.when[e] = true, at
	return true
}

// step records event e, which ends step s begun by event from.
func (t *stepTimer) step(s, from, e int, at time.Time) {
	if t.seen[from] && t.mark(e, at) {
		t.taken[s] = append(t.taken[s], at.Sub(t.when[from]))
	}
}

func (t *stepTimer) packet(p packet) {
	toLB, fromLB := p.dst.Port() == t.port, p.src.Port() == t.port
	toBackend, fromBackend := p.dst.Port() == t.backendPort, p.src.Port() == t.backendPort
	syn := p.tcp.SYN && !p.tcp.ACK
	if toLB && syn {
		t.seen = [events]bool{}
		t.mark(clientSYN, p.at)
		t.inConn = true
		return
	}
	if !t.inConn {
		return
	}
	data := p.size > 0
	switch {
	case toBackend && syn:
		t.step(0, clientSYN, backendSYN, p.at)
	case fromBackend && data && !t.seen[greeting]:
		t.mark(greeting, p.at)
	case fromLB && data && !t.seen[greetingSent]:
		t.step(1, greeting, greetingSent, p.at)
	case toLB && data && !t.seen[echo]:
		t.mark(echo, p.at)
	case toBackend && data && t.seen[echo]:
		t.step(2, echo, echoSent, p.at)
	case fromBackend && data && t.seen[echoSent] && !t.seen[answer]:
		t.mark(answer, p.at)
	case fromLB && data && t.seen[answer]:
		t.step(3, answer, answerSent, p.at)
	case toLB && p.tcp.FIN && !t.seen[clientFIN]:
		t.mark(clientFIN, p.at)
	case toBackend && p.tcp.FIN:
		t.step(4, clientFIN, finSent, p.at)
	}
}

// summary returns each step's count, median and 90th percentile.
func (t *stepTimer) summary() []Step {
	steps := make([]Step, 0, len(stepNames))
	for i, name := range stepNames {
		d := t.taken[i]
		s := Step{Name: name, Count: len(d)}
		if len(d) > 0 {
			slices.Sort(d)
			s.Median, s.P90 = d[len(d)/2], d[len(d)*9/10]
		}
		steps = append(steps, s)
	}
	return steps
}
