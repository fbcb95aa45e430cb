package drill

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

// The page is one file that a browser renders offline: inline CSS and SVG,
// no script, and a Content-Security-Policy that forbids every fetch, so a
// page that tried one would say so in the browser's console.
var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"num":  num,
	"secs": seconds,
	"rate": rate,
	"size": size,
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"tri": func(b *bool) string {
		switch {
		case b == nil:
			return "unknown"
		case *b:
			return "yes"
		}
		return "no"
	},
	"deref": func(f *float64) float64 { return *f },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>voyageur drill {{when .R.Started}}: {{if .R.Passed}}passed{{else}}FAILED{{end}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.05em;margin-top:1.5em}
.pass{color:#17692c}.fail{color:#b00020}
.verdict{font-size:1.3em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:.3em;color:#fff}
.verdict.pass{background:#17692c}.verdict.fail{background:#b00020}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.basis{color:#555;font-size:.9em}code{font-size:.9em;word-break:break-all}
svg{background:#fafafa;border:1px solid #e4e4e4}
</style>
</head>
<body>
<h1>Disaster-recovery drill</h1>
<p><span class="verdict {{if .R.Passed}}pass{{else}}fail{{end}}">{{if .R.Passed}}PASSED{{else}}FAILED{{end}}</span></p>
<table>
<tr><th>started</th><td>{{when .R.Started}}</td></tr>
<tr><th>duration</th><td>{{num .R.DurationSeconds}} s</td></tr>
<tr><th>host</th><td>{{.R.Host}}</td></tr>
<tr><th>voyageur</th><td>{{.R.Version}}</td></tr>
<tr><th>jobs</th><td>{{range $i, $j := .R.Jobs}}{{if $i}}, {{end}}<span class="{{if $j.Passed}}pass{{else}}fail{{end}}">{{$j.Job}}</span>{{end}}</td></tr>
</table>
{{range .Jobs}}{{$j := .R}}
<h2 id="job-{{$j.Job}}">Job {{$j.Job}}: <span class="{{if $j.Passed}}pass{{else}}fail{{end}}">{{if $j.Passed}}passed{{else}}failed{{end}}</span></h2>
{{if $j.Problems}}<ul class="fail">{{range $j.Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h3>Recovery objectives</h3>
{{.Objectives}}
<h3>Recovery of the sample</h3>
<table>
<tr><th>sampled</th><td>{{$j.Sampled}} objects, {{size $j.SampledBytes}} ({{$j.SampledBytes}} bytes)</td></tr>
<tr><th>verified</th><td>{{$j.Verified}} (SHA-256; {{range $k, $v := $j.VerifiedAgainst}}{{$v}} against the {{$k}} {{end}})</td></tr>
<tr><th>through voyageur serve</th><td>{{if $j.ServeNote}}{{$j.ServeNote}}{{else}}{{$j.ServeVerified}} read again with the same SHA-256 (the failover path, {{num $j.ServeSeconds}} s, {{rate $j.ServeBytesPerSecond}}){{end}}</td></tr>
<tr><th>failed</th><td>{{len $j.Failed}}{{if $j.Failed}}<ul>{{range $j.Failed}}<li><code>{{.Key}}</code>: {{.Reason}}</li>{{end}}</ul>{{end}}</td></tr>
<tr><th>replica</th><td>{{$j.ReplicaObjects}} objects, {{size $j.ReplicaBytes}} ({{$j.ReplicaBytes}} bytes)</td></tr>
</table>
<h3>Measured RTO</h3>
<table>
<tr><th>rto_seconds_estimate</th><td>{{num $j.RTOSecondsEstimate}} s ({{secs $j.RTOSecondsEstimate}})<div class="basis">{{$j.RTOBasis}}</div></td></tr>
<tr><th>restore_bytes_per_second</th><td>{{num $j.RestoreBytesPerSecond}} ({{rate $j.RestoreBytesPerSecond}})</td></tr>
<tr><th>first_byte_seconds</th><td>{{num $j.FirstByteSeconds}} s</td></tr>
<tr><th>catalog_seconds</th><td>{{num $j.CatalogSeconds}} s</td></tr>
<tr><th>restore_seconds</th><td>{{num $j.RestoreSeconds}} s (the sample)</td></tr>
</table>
<h3>Measured RPO</h3>
<table>
<tr><th>rpo_seconds</th><td>{{if $j.RPOSeconds}}{{num (deref $j.RPOSeconds)}} s ({{secs (deref $j.RPOSeconds)}}){{else}}unknown{{end}}<div class="basis">{{$j.RPOBasis}}</div></td></tr>
<tr><th>unreplicated</th><td>{{$j.Unreplicated}} changes found not yet replicated</td></tr>
</table>
{{if $j.LagHistogram}}<h3>Replication lag (watch), {{$j.LagObjects}} objects from the journal</h3>{{.Histogram}}{{end}}
<h3>Replication lag over time (journal run history)</h3>
{{.Lag}}
<h3>Past drills (this report directory)</h3>
{{.History}}
<h3>Residency</h3>
<table>
<tr><th>provider</th><td>{{$j.Destination.Provider}}</td></tr>
<tr><th>region</th><td>{{$j.Destination.Region}}</td></tr>
<tr><th>in Canada</th><td>{{tri $j.Destination.InCanada}}<div class="basis">{{$j.Destination.Basis}}</div></td></tr>
</table>
<h3>Key custody</h3>
<table>
<tr><th>recipients</th><td>{{range $j.Recipients}}<code>{{.}}</code><br>{{else}}none (the replica is not encrypted){{end}}</td></tr>
<tr><th>the drill's identity matches</th><td>{{range $j.Custody.DrillIdentity}}<code>{{.}}</code><br>{{else}}none{{end}}</td></tr>
<tr><th>other identities on this host</th><td>{{range $j.Custody.HostIdentities}}<code>{{.Path}}</code> matches {{range .Matches}}<code>{{.}}</code> {{end}}<br>{{else}}none found{{end}}<div class="basis">searched: {{range $j.Custody.Searched}}<code>{{.}}</code> {{end}}</div></td></tr>
<tr><th>retention</th><td>{{$j.Custody.Retention}}</td></tr>
</table>
{{end}}
</body>
</html>
`))

// pageJob is one job's section: its result and its charts.
type pageJob struct {
	R                                   Result
	Objectives, Histogram, Lag, History template.HTML
}

// HTML writes the report's page; history holds the drills found in the
// report directory (this one among them), oldest first.
func (r *Report) HTML(w io.Writer, history []Report) error {
	data := struct {
		R    *Report
		Jobs []pageJob
	}{R: r}
	for _, j := range r.Jobs {
		data.Jobs = append(data.Jobs, pageJob{
			R: j, Objectives: objectivesChart(j), Histogram: histogramChart(j.LagHistogram),
			Lag: lagChart(j.LagHistory), History: historyChart(j.Job, history),
		})
	}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("render report page: %w", err)
	}
	return nil
}

// num prints a figure as its JSON does.
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func rate(v float64) string { return size(int64(v)) + "/s" }

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 640, 180
	padL, padB     = 110, 30
)

// svg opens a chart with an accessible title.
func svg(b *strings.Builder, title string, h int) {
	fmt.Fprintf(b, `<svg role="img" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg"><title>%s</title>`,
		chartW, h, chartW, h, html.EscapeString(title))
}

func text(b *strings.Builder, x, y float64, anchor, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="%s">%s</text>`, x, y, anchor, html.EscapeString(s))
}

// objectivesChart draws the measured RPO and RTO as bars, each against its
// objective (a red line), on a scale per bar.
func objectivesChart(j Result) template.HTML {
	type row struct {
		name      string
		measured  *float64
		objective float64
	}
	var obj ObjectivesResult
	if j.Objectives != nil {
		obj = *j.Objectives
	}
	rto := j.RTOSecondsEstimate
	rows := []row{{"RPO", j.RPOSeconds, obj.RPOSeconds}, {"RTO (estimate)", &rto, obj.RTOSeconds}}
	var b strings.Builder
	svg(&b, "RPO and RTO against objectives", 130)
	for i, r := range rows {
		y := 20 + float64(i)*55
		text(&b, 5, y+17, "start", r.name)
		scale := max(r.objective*1.25, 1)
		if r.measured != nil {
			scale = max(scale, *r.measured*1.1)
		}
		width := float64(chartW - padL - 20)
		label := "unknown"
		if r.measured != nil {
			m := *r.measured
			color := "#17692c"
			if r.objective > 0 && m > r.objective {
				color = "#b00020"
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="24" fill="%s"/>`, padL, y, max(width*m/scale, 1), color)
			label = seconds(m)
		}
		if r.objective > 0 {
			x := float64(padL) + width*r.objective/scale
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#b00020" stroke-width="2" stroke-dasharray="4 2"/>`, x, y-6, x, y+30)
			text(&b, x, y+44, "middle", "objective "+seconds(r.objective))
			label += " / objective " + seconds(r.objective)
		} else {
			label += " (no objective set)"
		}
		text(&b, float64(padL)+4, y-4, "start", label)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// point is one dot of a time chart.
type point struct {
	t   time.Time
	v   float64
	bad bool
}

// timeChart draws series of points over time, joined by lines.
func timeChart(title string, series map[string][]point, colors map[string]string, order []string) template.HTML {
	var all []point
	for _, s := range series {
		all = append(all, s...)
	}
	if len(all) == 0 {
		return template.HTML(`<p class="basis">no data yet</p>`)
	}
	t0, t1, vmax := all[0].t, all[0].t, 0.0
	for _, p := range all {
		if p.t.Before(t0) {
			t0 = p.t
		}
		if p.t.After(t1) {
			t1 = p.t
		}
		vmax = max(vmax, p.v)
	}
	vmax = max(vmax*1.1, 1)
	span := max(t1.Sub(t0).Seconds(), 1)
	w, h := float64(chartW-padL-20), float64(chartH-padB-20)
	x := func(t time.Time) float64 {
		if t0.Equal(t1) {
			return float64(padL) + w/2
		}
		return float64(padL) + w*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 { return 10 + h*(1-v/vmax) }
	var b strings.Builder
	svg(&b, title, chartH)
	fmt.Fprintf(&b, `<line x1="%d" y1="10" x2="%d" y2="%.1f" stroke="#888"/><line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`,
		padL, padL, 10+h, padL, 10+h, float64(padL)+w, 10+h)
	text(&b, padL-4, 20, "end", seconds(vmax))
	text(&b, padL-4, 10+h, "end", "0")
	text(&b, padL, 10+h+18, "start", t0.UTC().Format("2006-01-02 15:04"))
	if !t0.Equal(t1) {
		text(&b, float64(padL)+w, 10+h+18, "end", t1.UTC().Format("2006-01-02 15:04"))
	}
	for i, name := range order {
		s := series[name]
		c := colors[name]
		var line []string
		for _, p := range s {
			line = append(line, fmt.Sprintf("%.1f,%.1f", x(p.t), y(p.v)))
		}
		if len(line) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, strings.Join(line, " "))
		}
		for _, p := range s {
			fill := c
			if p.bad {
				fill = "#b00020"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s: %s at %s</title></circle>`,
				x(p.t), y(p.v), fill, html.EscapeString(name), seconds(p.v), p.t.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, `<rect x="5" y="%d" width="10" height="10" fill="%s"/>`, 40+i*18, c)
		text(&b, 20, float64(49+i*18), "start", name)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// lagChart charts the journal's run history: the longest a change could
// wait, per run; red where the run had failures.
func lagChart(history []LagPoint) template.HTML {
	var s []point
	for _, p := range history {
		s = append(s, point{t: p.Time, v: p.Seconds, bad: p.Failed > 0})
	}
	return timeChart("Replication lag over time", map[string][]point{"lag": s}, map[string]string{"lag": "#1f5fa8"}, []string{"lag"})
}

// historyChart charts the job's RTO estimate and RPO in every drill found;
// red dots are drills that failed.
func historyChart(job string, history []Report) template.HTML {
	series := map[string][]point{}
	for _, r := range history {
		for _, j := range r.Jobs {
			if j.Job != job {
				continue
			}
			series["RTO estimate"] = append(series["RTO estimate"], point{t: r.Started, v: j.RTOSecondsEstimate, bad: !j.Passed})
			if j.RPOSeconds != nil {
				series["RPO"] = append(series["RPO"], point{t: r.Started, v: *j.RPOSeconds, bad: !j.Passed})
			}
		}
	}
	chart := timeChart("Past drills", series, map[string]string{"RTO estimate": "#1f5fa8", "RPO": "#8a5a00"}, []string{"RTO estimate", "RPO"})
	n := len(series["RTO estimate"])
	return template.HTML(fmt.Sprintf(`<p class="basis">%d drills of this job found.</p>`, n)) + chart
}

// histogramChart draws the lag histogram as bars.
func histogramChart(h []LagBucket) template.HTML {
	top := 1
	for _, c := range h {
		top = max(top, c.Count)
	}
	var b strings.Builder
	svg(&b, "Replication lag histogram", chartH)
	w := float64(chartW-40) / float64(len(h))
	hh := float64(chartH - padB - 20)
	for i, c := range h {
		x := 20 + float64(i)*w
		bh := hh * float64(c.Count) / float64(top)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f5fa8"><title>%d</title></rect>`, x+2, 10+hh-bh, w-4, bh, c.Count)
		label := "more"
		if c.LESeconds != nil {
			label = "≤" + num(*c.LESeconds)
		}
		text(&b, x+w/2, 10+hh+16, "middle", label)
		if c.Count > 0 {
			text(&b, x+w/2, 10+hh-bh-3, "middle", strconv.Itoa(c.Count))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
