//go:build linux

package bench

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"time"
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

// bar is one bar of an SVG chart.
type bar struct {
	X, Y, W, H float64
	Label      string
}

type chart struct {
	Title string
	Bars  []bar
	Width float64
}

// barChart lays out values as vertical bars in a 600x200 box.
func barChart(title string, labels []string, values []float64) chart {
	c := chart{Title: title, Width: 600}
	maxV := 1.0
	for _, v := range values {
		maxV = math.Max(maxV, v)
	}
	w := 560 / math.Max(1, float64(len(values)))
	for i, v := range values {
		h := 160 * v / maxV
		c.Bars = append(c.Bars, bar{X: 30 + float64(i)*w, Y: 175 - h, W: math.Max(1, w-2), H: h, Label: labels[i]})
	}
	return c
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{"pct": func(f float64) float64 { return 100 * f }}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stickylb bench: {{.R.Target}}</title>
<style>body{font:14px system-ui,sans-serif;margin:20px;color:#1f2328}table{border-collapse:collapse}
td,th{padding:3px 10px;border-bottom:1px solid #d0d7de;text-align:left}svg{background:#f6f8fa;margin:8px 0}
.bar{fill:#0969da}text{font-size:10px}</style></head><body>
<h1>stickylb bench</h1>
<table>
<tr><th>target</th><td>{{.R.Target}}</td></tr>
<tr><th>mode</th><td>{{.R.Mode}}, {{.Dur}}</td></tr>
<tr><th>connections</th><td>{{.R.Conns}} ({{printf "%.0f" .R.CPS}}/s), {{.R.Errors}} errors</td></tr>
<tr><th>throughput</th><td>{{printf "%.1f" .R.MBps}} MB/s</td></tr>
<tr><th>latency</th><td>p50 {{printf "%.3f" .R.Latency.P50}} ms, p90 {{printf "%.3f" .R.Latency.P90}}, p99 {{printf "%.3f" .R.Latency.P99}}, p99.9 {{printf "%.3f" .R.Latency.P999}}, max {{printf "%.3f" .R.Latency.Max}}</td></tr>
<tr><th>affinity violations</th><td>{{.R.Violations}} of {{.R.Clients}} clients</td></tr>
<tr><th>balance</th><td>max/mean {{printf "%.2f" .R.Balance.MaxOverMean}}, CV {{printf "%.3f" .R.Balance.CV}}</td></tr>
{{with .R.Remap}}<tr><th>remap</th><td>{{.Moved}} of {{.Compared}} clients moved ({{printf "%.1f" (pct .MovedShare)}} %, ideal {{printf "%.1f" (pct .Ideal)}} %)</td></tr>{{end}}
</table>
{{range .Charts}}<h2>{{.Title}}</h2>
<svg width="{{.Width}}" height="200" viewBox="0 0 600 200">{{range .Bars}}<rect class="bar" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Label}}</title></rect>{{end}}
{{range $i, $b := .Bars}}{{if lt $i 12}}<text x="{{$b.X}}" y="192">{{$b.Label}}</text>{{end}}{{end}}</svg>
{{end}}
</body></html>
`))

// WriteHTML writes a self-contained report with charts of the clients per
// backend, the latency histogram and connections over time.
func WriteHTML(w io.Writer, r *Result) error {
	var charts []chart
	var names []string
	var counts []float64
	for _, k := range slices.Sorted(maps.Keys(r.PerBackend)) {
		names = append(names, k)
		counts = append(counts, float64(r.PerBackend[k]))
	}
	charts = append(charts, barChart("Clients per backend", names, counts))
	var ll []string
	var lv []float64
	for _, b := range r.Histogram {
		ll = append(ll, fmt.Sprintf("%.2gms", b.UpToMs))
		lv = append(lv, float64(b.Count))
	}
	if len(ll) > 60 { // merge into about 60 bars
		step := (len(ll) + 59) / 60
		var ml []string
		var mv []float64
		for i := 0; i < len(ll); i += step {
			sum := 0.0
			for j := i; j < min(i+step, len(lv)); j++ {
				sum += lv[j]
			}
			ml, mv = append(ml, ll[min(i+step, len(ll))-1]), append(mv, sum)
		}
		ll, lv = ml, mv
	}
	charts = append(charts, barChart("Latency histogram", ll, lv))
	var tl []string
	var tv []float64
	for i, v := range r.Timeline {
		tl, tv = append(tl, fmt.Sprintf("%ds", i)), append(tv, float64(v))
	}
	charts = append(charts, barChart("Connections per second", tl, tv))
	return page.Execute(w, map[string]any{
		"R": r, "Dur": r.Duration.Round(time.Millisecond).String(), "Charts": charts,
	})
}
