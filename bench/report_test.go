package bench

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/replicator"
)

// docPath is docs/BENCHMARKS.md, from the package directory go test runs in.
const docPath = "../docs/BENCHMARKS.md"

// report is what BenchmarkVsRclone found.
type report struct {
	started, finished     time.Time
	loadBefore, loadAfter string
	versions              []string
	raw                   []rawResult
	results               []result
	// floor is the floor client's runs on workload S (floor_test.go).
	floor []sample
}

func median(ss []sample) time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.wall
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// medianServers is the median of the MinIO servers' CPU time.
func medianServers(ss []sample) time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.servers
	}
	return medianDuration(d)
}

func peak(ss []sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.rss)
	}
	return m
}

// cpu is the median CPU time of the samples.
func cpu(ss []sample) time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.cpu
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func (r result) ratio() float64 {
	return median(r.voy).Seconds() / median(r.rcl).Seconds()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func all(ss []sample) string {
	var parts []string
	for _, s := range ss {
		parts = append(parts, fmt.Sprintf("%.2f", s.wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}

func (rep *report) markdown() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Run %s, %s on %s.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.finished.Sub(rep.started).Round(time.Second), machine())
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) before: %s; after: %s. Tools: %s.\n\n", rep.loadBefore, rep.loadAfter, strings.Join(rep.versions, "; "))
	b.WriteString("| workload | voyageur (median) | rclone (median) | voyageur / rclone | target | peak RSS voyageur | peak RSS rclone | CPU voyageur / rclone | runs voyageur / rclone (s) |\n")
	b.WriteString("|---|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, r := range rep.results {
		target := "—"
		if r.target > 0 {
			verdict := "met"
			if r.ratio() > r.target {
				verdict = "**not met**"
			}
			target = fmt.Sprintf("≤ %.2f: %s", r.target, verdict)
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %.2f | %s | %s | %s | %.2f / %.2f s | %s / %s |\n", r.name, r.what,
			secs(median(r.voy)), secs(median(r.rcl)), r.ratio(), target, mib(peak(r.voy)), mib(peak(r.rcl)),
			cpu(r.voy).Seconds(), cpu(r.rcl).Seconds(), all(r.voy), all(r.rcl))
	}
	b.WriteString("\nPeak RSS against `transfer.memory` + 64 MiB (the default budget of each workload; target: within it):")
	for i, r := range rep.results {
		var t replicator.Transfer
		if err := t.Normalize(r.encrypted); err != nil {
			panic(err) // the defaults are valid
		}
		bound := t.Memory + 64<<20
		verdict := "within"
		if peak(r.voy) > bound {
			verdict = "**over**"
		}
		sep := ","
		if i == len(rep.results)-1 {
			sep = "."
		}
		fmt.Fprintf(&b, " %s %s of %s (%s)%s", r.name, mib(peak(r.voy)), mib(bound), verdict, sep)
	}
	b.WriteString("\n")
	b.WriteString("\nThe raw limit: awscli (16 concurrent requests, 16 MiB parts) moving the plain bytes, ")
	b.WriteString("PUT from local disk into the destination server, GET from the source server to local disk.\n\n")
	b.WriteString("| data | awscli PUT (median) | awscli GET (median) | runs |\n|---|---:|---:|---:|\n")
	for _, r := range rep.raw {
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %d |\n", r.name, r.what, secs(median(r.put)), secs(median(r.get)), len(r.put))
	}
	for _, r := range rep.results {
		switch r.name {
		case "L":
			if len(rep.raw) == 0 {
				continue
			}
			put := median(rep.raw[0].put)
			ratio := median(r.voy).Seconds() / put.Seconds()
			verdict := "met"
			if ratio > 1.15 {
				verdict = "**not met**"
			}
			fmt.Fprintf(&b, "\nL against the raw PUT: voyageur %s / awscli PUT %s = %.2f (target ≤ 1.15: %s).\n", secs(median(r.voy)), secs(put), ratio, verdict)
		case "C":
			fmt.Fprintf(&b, "\nC on the wire: voyageur wrote %s for the 256 MiB ledger (zstd + age); rclone crypt sends all of it and a little more.\n", mib(r.wire))
		case "S", "S plain":
			if len(rep.floor) == 0 {
				continue
			}
			fl := median(rep.floor)
			ratio := median(r.voy).Seconds() / fl.Seconds()
			line := fmt.Sprintf("\n%s against the floor client (one GET and one PUT per object, 16 at once, plain bytes): voyageur %s / floor %s = %.2f", r.name, secs(median(r.voy)), secs(fl), ratio)
			if r.name == "S" {
				verdict := "met"
				if ratio > 1.10 {
					verdict = "**not met**"
				}
				line += fmt.Sprintf(" (target ≤ 1.10: %s)", verdict)
			}
			fmt.Fprintf(&b, "%s; floor runs %s s, peak RSS %s. CPU per run (median), the tool + both MinIO servers: voyageur %s + %s, floor %s + %s.\n",
				line, all(rep.floor), mib(peak(rep.floor)), secs(cpu(r.voy)), secs(medianServers(r.voy)), secs(cpu(rep.floor)), secs(medianServers(rep.floor)))
		}
	}
	return b.String()
}

// machine describes the host: Go, cores, CPU model, memory.
func machine() string {
	cpu, mem := "unknown CPU", ""
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if info, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(info), "MemTotal: %d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kib)/(1<<20))
		}
	}
	return fmt.Sprintf("`%s` %s/%s, %d cores (`%s`)%s", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, mem)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// replaceSection puts body between the markers of the named section in the
// file, or appends the section with its markers when they are missing.
func replaceSection(path, name, body string) error {
	begin := fmt.Sprintf("<!-- begin %s: generated by make bench, do not edit -->\n", name)
	end := fmt.Sprintf("<!-- end %s -->\n", name)
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(doc)
	section := begin + body + end
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
