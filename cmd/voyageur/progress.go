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

// termOut is a terminal shared by the progress bar and the log lines: a
// log line first clears the unfinished bar line, and the bar is drawn again
// after it, so that neither lands in the middle of the other.
type termOut struct {
	mu  sync.Mutex
	w   io.Writer
	bar string // the bar line shown, "" when none
}

// terminals holds the termOut of each terminal, so that the logger and the
// bar of one command share it.
var terminals sync.Map // *os.File -> *termOut

// terminal returns the termOut of w when w is a terminal.
func terminal(w io.Writer) (*termOut, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	t, _ := terminals.LoadOrStore(f, &termOut{w: f})
	return t.(*termOut), true
}

func (t *termOut) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar == "" {
		return t.w.Write(p)
	}
	io.WriteString(t.w, "\r\033[K")
	n, err := t.w.Write(p)
	io.WriteString(t.w, t.bar)
	return n, err
}

// setBar shows line as the bar; "" clears it.
func (t *termOut) setBar(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	io.WriteString(t.w, "\r\033[K"+line)
	t.bar = line
}

// startProgressBar redraws one status line on w every 250 ms while a job
// runs, only when w is a terminal; it returns the function that stops it.
func startProgressBar(w io.Writer, job string, p *replicator.Counters, off bool) (stop func()) {
	f, ok := terminal(w)
	if off || !ok {
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
				f.setBar("")
				return
			case <-t.C:
				f.setBar(progressLine(job, p, time.Since(start)))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func progressLine(job string, p *replicator.Counters, elapsed time.Duration) string {
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
