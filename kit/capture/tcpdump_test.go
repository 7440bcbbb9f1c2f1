package capture

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// A capture written by tcpdump on loopback, of real connections: one
// client reaches two servers on one port, another stays on one.
func TestTcpdumpCapture(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (.ci/run installs it)")
	}
	var lns []net.Listener
	ln, err := net.Listen("tcp", "127.0.0.11:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	lns = append(lns, ln)
	ln2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.12", strconv.Itoa(port)))
	if err != nil {
		t.Skip("port not free on 127.0.0.12")
	}
	lns = append(lns, ln2)
	for _, l := range lns {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		defer l.Close()
	}
	file := filepath.Join(t.TempDir(), "lo.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// -Z root: tcpdump would otherwise drop to its own user, who cannot
	// write into the test's private temporary directory.
	cmd := exec.CommandContext(ctx, "tcpdump", "-i", "lo", "-U", "--immediate-mode", "-Z", "root", "-w", file, "-s", "128", "tcp port "+strconv.Itoa(port))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Skip("tcpdump cannot start:", err)
	}
	// Wait until tcpdump has written its file header, i.e. has started.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(file); err == nil && st.Size() >= 24 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Skip("tcpdump did not start capturing (no permission?)")
		}
		time.Sleep(20 * time.Millisecond) // pacing a poll
	}
	dial := func(src, dst string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// read is the capture so far: -U writes each packet as it comes.
	read := func() *Report {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rep, _ := Analyze(f, Options{}) // the last packet may be half-written
		return rep
	}
	// It captures once a probe's connection shows in the file; the
	// probes (from 127.8.0.9, to one server) are left in the report.
	lbtest.Eventually(t, 10*time.Second, "a probe connection in the capture", func() bool {
		dial("127.8.0.9", "127.0.0.11")
		_, n := visits(read(), "127.8.0.9")
		return n > 0
	})
	dial("127.8.0.1", "127.0.0.11")
	dial("127.8.0.1", "127.0.0.12")
	dial("127.8.0.2", "127.0.0.11")
	dial("127.8.0.2", "127.0.0.11")
	lbtest.Eventually(t, 10*time.Second, "the four connections in the capture", func() bool {
		rep := read()
		_, a := visits(rep, "127.8.0.1")
		_, b := visits(rep, "127.8.0.2")
		return a == 2 && b == 2
	})
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Analyze(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	split1, n1 := visits(rep, "127.8.0.1")
	split2, n2 := visits(rep, "127.8.0.2")
	splitProbe, probes := visits(rep, "127.8.0.9")
	if rep.Flows != 4+probes || rep.Split != 1 || rep.Clients[0].Client != "127.8.0.1" || !split1 || n1 != 2 || split2 || n2 != 2 || splitProbe {
		st, _ := os.Stat(file)
		t.Fatalf("tcpdump capture (%d bytes; tcpdump said %q): %+v", st.Size(), stderr.String(), rep)
	}
}

// visits says whether client went to more than one server in rep, and
// how many connections it made.
func visits(rep *Report, client string) (split bool, flows int) {
	if rep == nil {
		return false, 0
	}
	for _, c := range rep.Clients {
		if c.Client == client {
			for _, v := range c.Visits {
				flows += v.Flows
			}
			return c.Split, flows
		}
	}
	return false, 0
}
