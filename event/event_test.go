package event

import (
	"fmt"
	"testing"
)

// A subscriber that comes late hears the notable events published before
// it (a cluster member joined before the admin API was built), then every
// event in order; pin and check events are not kept for it.
func TestLateSubscriberHearsNotableEvents(t *testing.T) {
	var s Stream
	var early []string
	s.Subscribe(func(e Event) { early = append(early, e.Kind.String()) })
	s.Publish(Event{Kind: Member, What: "cluster member lb2 joined"})
	s.Publish(Event{Kind: Pin})
	s.Publish(Event{Kind: Check})
	var late []string
	s.Subscribe(func(e Event) { late = append(late, e.What) })
	s.Publish(Event{Kind: Health, What: "up"})
	if fmt.Sprint(early) != "[member pin check health]" {
		t.Errorf("the first subscriber heard %v", early)
	}
	if fmt.Sprint(late) != "[cluster member lb2 joined up]" {
		t.Errorf("the late subscriber heard %v", late)
	}
}

// The kept events are bounded: the oldest give way.
func TestKeptEventsBounded(t *testing.T) {
	var s Stream
	for i := range Keep + 10 {
		s.Publish(Event{Kind: Decision, What: fmt.Sprint(i)})
	}
	var n int
	var first string
	s.Subscribe(func(e Event) {
		if n == 0 {
			first = e.What
		}
		n++
	})
	if n != Keep || first != "10" {
		t.Fatalf("a late subscriber heard %d events from %q; want %d from \"10\"", n, first, Keep)
	}
}

// A nil stream takes events and tells nobody, so a server built without
// one never checks.
func TestNilStream(t *testing.T) {
	var s *Stream
	s.Publish(Event{Kind: Pin})
}
