package health

import "testing"

// A target is up only while every check that reported on it passes; a
// check that never reported does not hold it down.
func TestVerdictsNeedEveryCheck(t *testing.T) {
	var v Verdicts
	steps := []struct {
		target, check string
		up, want      bool
	}{
		{"cas1", "tcp", true, true}, // the http check has not reported yet
		{"cas1", "http", false, false},
		{"cas2", "tcp", true, true}, // targets are apart
		{"cas1", "tcp", true, false},
		{"cas1", "http", true, true},
		{"cas1", "tcp", false, false},
	}
	for i, s := range steps {
		if got := v.Set(s.target, s.check, s.up); got != s.want {
			t.Fatalf("step %d: %s %s up=%v: combined %v, want %v", i, s.target, s.check, s.up, got, s.want)
		}
	}
}
