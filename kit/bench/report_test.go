//go:build linux

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// The HTML report, rendered by Chromium: the date, version, command line
// and parameters, and three uPlot charts with their legends, the removed
// backend kept in the per-backend chart. STICKYLB_SCREENSHOT=PATH also
// writes a screenshot for docs/.
func TestReportInBrowser(t *testing.T) {
	bin := lbtest.Chromium(t)
	bs, target := rig(t, "")
	res, err := Run(context.Background(), Config{Target: target, Clients: 120, Concurrency: 8, Rate: 400, Duration: 3 * time.Second,
		Event: bs[1].Kill, Removed: "cas2", At: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, res, Meta{Version: "v9.9.9-test", Command: "stickylb bench --target=" + target + " --remove=cas2"}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dom := string(lbtest.Headless(t, bin, "file://"+path, "--dump-dom"))
	for _, want := range []string{
		res.Started.UTC().Format(time.RFC3339) + " · stickylb v9.9.9-test · <code>stickylb bench --target=" + target + " --remove=cas2</code>",
		"<tr><th>concurrency</th><td>8</td></tr>", "<tr><th>rate</th><td>400/s</td></tr>", "<tr><th>removed</th><td>cas2 at 1.5 s</td></tr>",
		`id="backends" data-chart="backends"><div class="uplot`, `id="latency" data-chart="latency"><div class="uplot`,
		`id="timeline" data-chart="timeline"><div class="uplot`,
		">before the removal<", ">at the end<", ">connections/s<",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if n := strings.Count(dom, "<canvas"); n != 3 {
		t.Errorf("%d charts drawn, want 3", n)
	}
	if shot := os.Getenv("STICKYLB_SCREENSHOT"); shot != "" {
		lbtest.Headless(t, bin, "file://"+path, "--screenshot="+shot, "--window-size=1200,1300", "--hide-scrollbars")
	}
}

// The latency histogram's fine buckets merge into log-spaced bins that
// keep every count.
func TestLogBins(t *testing.T) {
	var hist []Bucket
	var total int64
	for i := 1; i <= 1000; i++ {
		hist = append(hist, Bucket{UpToMs: float64(i) / 100, Count: int64(i % 7)})
		total += int64(i % 7)
	}
	bounds, counts := logBins(hist, 40)
	var sum int64
	for _, c := range counts {
		sum += c
	}
	if len(bounds) != 40 || sum != total || bounds[39] < 9.99 || bounds[39] > 10.01 || bounds[0] <= 0.01 {
		t.Fatalf("%d bins, %d of %d counted, bounds %.3f..%.3f", len(bounds), sum, total, bounds[0], bounds[len(bounds)-1])
	}
}
