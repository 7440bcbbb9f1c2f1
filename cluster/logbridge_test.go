package cluster

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// A flood of junk at the gossip port costs a line or two, each counting
// the errors it stands for, not a line per packet (2000 junk datagrams
// gave 2000 ERROR lines before).
func TestMemberlistLogsThrottled(t *testing.T) {
	addr := lbtest.FreeAddr(t, "127.0.4.31")
	var logs lbtest.Buffer
	m, err := Start(Options{Config: config.Cluster{Bind: addr, BindAddr: netip.MustParseAddrPort(addr), AdvertiseAddr: netip.MustParseAddrPort(addr), NodeName: "flooded",
		SyncTimeout: config.Duration{Duration: time.Second}, SyncInterval: config.Duration{Duration: time.Minute}},
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		c.Write([]byte{0xff, byte(i), 1, 2, 3, 4, 5, 6})
	}
	c.Close()
	lbtest.Eventually(t, 5*time.Second, "memberlist's complaint", func() bool { return strings.Contains(logs.String(), "level=ERROR") })
	time.Sleep(300 * time.Millisecond) // the rest of the flood, within one log period
	if n := strings.Count(logs.String(), "level=ERROR"); n > 2 {
		t.Fatalf("2000 junk datagrams gave %d ERROR lines:\n%.2000s", n, logs.String())
	}
	m.Leave(time.Second)
}
