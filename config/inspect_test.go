package config

import (
	"strings"
	"testing"
	"time"
)

// inspect_dcerpc follows the endpoint mapper on a listener of one port:
// on a range it is an error naming the file, line and key, as is a
// pinhole_timeout out of bounds; by default the timeout is 2 minutes.
func TestInspectDCERPCKeys(t *testing.T) {
	l := "[listener.epmap]\nlisten = \"127.0.0.1:10135\"\npool = \"cas\"\n"
	src := strings.Replace(minimal, l, l+"inspect_dcerpc = true\n", 1)
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if lc := c.Listeners["epmap"]; !lc.InspectDCERPC || lc.PinholeTimeout.Duration != 2*time.Minute {
		t.Fatalf("inspect_dcerpc %v, pinhole_timeout %s", lc.InspectDCERPC, lc.PinholeTimeout.Duration)
	}
	ranged := strings.Replace(src, "127.0.0.1:10135", "127.0.0.1:10135,16005-16010", 1)
	if _, err := Parse("f.toml", []byte(ranged)); err == nil || !strings.Contains(err.Error(), "f.toml:5: listener.epmap.inspect_dcerpc: follows the endpoint mapper on a listener of its one port") {
		t.Fatalf("inspect_dcerpc on a range: %v", err)
	}
	short := strings.Replace(src, "inspect_dcerpc = true\n", "inspect_dcerpc = true\npinhole_timeout = \"10ms\"\n", 1)
	if _, err := Parse("f.toml", []byte(short)); err == nil || !strings.Contains(err.Error(), "f.toml:6: listener.epmap.pinhole_timeout") {
		t.Fatalf("pinhole_timeout of 10ms: %v", err)
	}
}
