package config

import (
	"strings"
	"testing"
	"time"
)

// Outlier ejection is off unless the pool's file has the table; a table
// that sets nothing takes Envoy's defaults, and a max_ejection_time left
// unset is at least the ejection_time set.
func TestOutlierOffUnlessConfigured(t *testing.T) {
	c, err := Parse("f.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Pools["cas"].Outlier.Enabled {
		t.Fatal("outlier ejection on in a file without [pool.cas.outlier]")
	}
	c, err = Parse("f.toml", []byte(minimal+"[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultOutlier()
	want.Enabled = true
	if got := c.Pools["cas"].Outlier; got != want {
		t.Fatalf("an empty table: %+v, want %+v", got, want)
	}
	c, err = Parse("f.toml", []byte(minimal+"[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\nejection_time = \"10m\"\nfault_rate = 60\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Pools["cas"].Outlier; o.MaxEjectionTime.Duration != 10*time.Minute || o.FaultRate != 60 {
		t.Fatalf("ejection_time 10m: max_ejection_time %s, fault_rate %d", o.MaxEjectionTime, o.FaultRate)
	}
}

// check refuses settings that cannot work, each with file, line and key.
func TestOutlierNonsenseRefused(t *testing.T) {
	cases := []struct{ src, want string }{
		{"max_ejected_share = 0\n", "f.toml:11: pool.cas.outlier.max_ejected_share: must be a percentage from 1 to 100, not 0"},
		{"max_ejected_share = 101\n", "f.toml:11: pool.cas.outlier.max_ejected_share: must be a percentage from 1 to 100, not 101"},
		{"ejection_time = \"0\"\n", "f.toml:11: pool.cas.outlier.ejection_time: must be positive"},
		{"ejection_time = \"1m\"\nmax_ejection_time = \"30s\"\n", "f.toml:12: pool.cas.outlier.max_ejection_time: 30s is shorter than ejection_time (1m0s)"},
		{"fault_rate = 150\n", "f.toml:11: pool.cas.outlier.fault_rate: must be a percentage from 0 (off) to 100, not 150"},
		{"fault_rate = 50\nmin_requests = 0\n", "f.toml:12: pool.cas.outlier.min_requests: must be from 1"},
		{"consecutive_faults = -1\n", "f.toml:11: pool.cas.outlier.consecutive_faults: must be from 0 (off)"},
		{"interval = \"1ms\"\n", "f.toml:11: pool.cas.outlier.interval: 1ms is too short"},
		{"consecutive_faults = 0\nconsecutive_bind_rejections = 0\n", "f.toml:10: pool.cas.outlier: every rule is off"},
		{"consecutive_fault = 3\n", "f.toml:11: pool.cas.outlier.consecutive_fault: unknown key; did you mean consecutive_faults?"},
	}
	for _, c := range cases {
		_, err := Parse("f.toml", []byte(minimal+"[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\n"+c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

// Outlier ejection learns from DCE/RPC read on the pool's connections:
// with nothing read it could never eject, and check says so.
func TestOutlierNeedsDCERPCRead(t *testing.T) {
	_, err := Parse("f.toml", []byte(minimal+"[pool.cas.outlier]\n"))
	if err == nil || !strings.Contains(err.Error(), `f.toml:8: pool.cas.outlier: learns from the pool's DCE/RPC traffic, which is not read: set dcerpc = "calls"`) {
		t.Fatalf("outlier table on a pool that reads no DCE/RPC: %v", err)
	}
}
