package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/voyageur-ca/voyageur/replicator"
)

// startProgressBar redraws one status line on w every 250 ms while a job
// runs, only when w is a terminal; it returns the function that stops it.
func startProgressBar(w io.Writer, job string, p *replicator.Progress, off bool) (stop func()) {
	f, ok := w.(*os.File)
	if off || !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(f, "\r\033[K"+progressLine(job, p, time.Since(start)))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func progressLine(job string, p *replicator.Progress, elapsed time.Duration) string {
	objs, objsTotal := p.ObjectsDone.Load(), p.ObjectsQueued.Load()
	done, total := p.BytesDone.Load(), p.BytesQueued.Load()
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && total > done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s: %d/%d objects  %s/%s  %s/s  ETA %s", job, objs, objsTotal, humanBytes(done), humanBytes(total), humanBytes(int64(rate)), eta)
}

func humanBytes(n int64) string {
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
