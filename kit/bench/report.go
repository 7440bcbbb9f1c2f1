//go:build linux

package bench

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/stickylb/stickylb/uplot"
)

// WriteText prints a result as a short table.
func WriteText(w io.Writer, r *Result) {
	fmt.Fprintf(w, "target %s, mode %s, %s, %d clients\n", r.Target, r.Mode, r.Duration.Round(time.Millisecond), r.Clients)
	fmt.Fprintf(w, "connections        %d (%.0f/s), errors %d %v\n", r.Conns, r.CPS, r.Errors, r.ErrorKinds)
	fmt.Fprintf(w, "throughput         %.1f MB/s\n", r.MBps)
	fmt.Fprintf(w, "latency ms         p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	fmt.Fprintf(w, "affinity           %d violations among %d clients\n", r.Violations, r.Clients)
	fmt.Fprintf(w, "balance            max/mean %.2f, CV %.3f:", r.Balance.MaxOverMean, r.Balance.CV)
	for _, k := range slices.Sorted(maps.Keys(r.PerBackend)) {
		fmt.Fprintf(w, " %s %d (%.1f%%)", k, r.PerBackend[k], 100*float64(r.PerBackend[k])/float64(max(r.Clients, 1)))
	}
	fmt.Fprintln(w)
	if r.Remap != nil {
		fmt.Fprintf(w, "remap              %d of %d clients moved (%.1f%%; ideal %.1f%%)\n",
			r.Remap.Moved, r.Remap.Compared, 100*r.Remap.MovedShare, 100*r.Remap.Ideal)
	}
}

// Meta is what the report says about the run besides its result.
type Meta struct {
	Version string // stickylb's
	Command string // the command line, as typed
}

// reportData is what the page's script draws: series as uPlot takes them.
type reportData struct {
	Backends      []string  `json:"backends"`
	Before        []int     `json:"before"` // clients per backend before the event; nil without one
	AfterCounts   []int     `json:"after"`  // clients per backend at the end
	HistMs        []float64 `json:"hist_ms"`
	HistCount     []int64   `json:"hist_count"`
	TimelineSecs  []float64 `json:"timeline_s"`
	TimelineConns []int64   `json:"timeline_conns"`
	Removed       string    `json:"removed"`
	RemovedAt     float64   `json:"removed_at"`
}

func newReportData(r *Result) reportData {
	d := reportData{Removed: r.Removed, RemovedAt: r.RemovedAt}
	names := map[string]bool{}
	for k := range r.PerBackend {
		names[k] = true
	}
	for k := range r.PerBackendBefore {
		names[k] = true // a removed backend stays in the chart
	}
	d.Backends = slices.Sorted(maps.Keys(names))
	for _, b := range d.Backends {
		d.AfterCounts = append(d.AfterCounts, r.PerBackend[b])
		if r.PerBackendBefore != nil {
			d.Before = append(d.Before, r.PerBackendBefore[b])
		}
	}
	d.HistMs, d.HistCount = logBins(r.Histogram, 40)
	timeline := r.Timeline
	if frac := r.Duration.Seconds() - float64(int(r.Duration.Seconds())); len(timeline) > 1 && frac < 0.5 {
		timeline = timeline[:len(timeline)-1] // a last second barely begun would look like a collapse
	}
	for i, v := range timeline {
		d.TimelineSecs, d.TimelineConns = append(d.TimelineSecs, float64(i)), append(d.TimelineConns, v)
	}
	return d
}

// logBins merges the histogram's fine buckets into at most n bins of equal
// width on a log scale, from the first bucket's bound to the last's; each
// bin is given by its upper bound.
func logBins(hist []Bucket, n int) ([]float64, []int64) {
	if len(hist) == 0 {
		return nil, nil
	}
	lo, hi := math.Log(hist[0].UpToMs), math.Log(hist[len(hist)-1].UpToMs)
	if hi <= lo {
		return []float64{hist[0].UpToMs}, []int64{hist[0].Count}
	}
	step := (hi - lo) / float64(n)
	bounds, counts := make([]float64, n), make([]int64, n)
	for i := range bounds {
		bounds[i] = math.Exp(lo + float64(i+1)*step)
	}
	for _, b := range hist {
		i := min(n-1, max(0, int(math.Ceil((math.Log(b.UpToMs)-lo)/step))-1))
		counts[i] += b.Count
	}
	return bounds, counts
}

//go:embed report.html
var reportPage string

var page = template.Must(template.New("report").Funcs(template.FuncMap{"pct": func(f float64) float64 { return 100 * f }}).Parse(reportPage))

// WriteHTML writes a self-contained report (uPlot inlined, no external
// asset): the run's date, stickylb's version, the command line and
// parameters, the scores, and charts of clients per backend (before and
// after a removal), the latency histogram and connections per second with
// the removal marked.
func WriteHTML(w io.Writer, r *Result, m Meta) error {
	data, err := json.Marshal(newReportData(r))
	if err != nil {
		return err
	}
	return page.Execute(w, map[string]any{
		"R": r, "M": m, "Dur": r.Duration.Round(time.Millisecond).String(), "Date": r.Started.UTC().Format(time.RFC3339),
		"Data": template.JS(data), "UPlotJS": template.JS(uplot.JS), "UPlotCSS": template.CSS(uplot.CSS),
	})
}
