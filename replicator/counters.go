package replicator

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// Counters are the live counts of one run (sync, watch or restore). The
// progress bar reads them as the run goes; its Summary and its journal run
// record are derived from them, so the three never disagree. Safe for
// concurrent use.
type Counters struct {
	// ObjectsQueued and BytesQueued count the work found so far,
	// ObjectsDone and BytesDone the part of it finished (failed ones
	// included, with no bytes): the progress bar's figures.
	ObjectsQueued, ObjectsDone atomic.Int64
	BytesQueued, BytesDone     atomic.Int64
	// What the run did to objects.
	Copied, Skipped, Deleted, Failed atomic.Int64
	// BytesRead are read from the source (restore: the replica),
	// BytesWritten written to the destination (restore: the target).
	BytesRead, BytesWritten atomic.Int64

	mu       sync.Mutex
	failures []Failure
}

// maxFailuresListed bounds the failures kept in a Summary; Failed counts all.
const maxFailuresListed = 1000

// Queue counts one object of size bytes found to work on.
func (c *Counters) Queue(size int64) {
	c.ObjectsQueued.Add(1)
	c.BytesQueued.Add(max(size, 0))
}

// Done counts one queued object finished, bytes of it moved.
func (c *Counters) Done(bytes int64) {
	c.ObjectsDone.Add(1)
	c.BytesDone.Add(bytes)
}

// Fail counts a failed object and lists it (up to maxFailuresListed).
func (c *Counters) Fail(key, op string, err error) {
	c.Failed.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < maxFailuresListed {
		c.failures = append(c.failures, Failure{Key: key, Op: op, Error: err.Error()})
	}
}

// Counts returns a snapshot.
func (c *Counters) Counts() Counts {
	return Counts{
		ObjectsQueued: c.ObjectsQueued.Load(), ObjectsDone: c.ObjectsDone.Load(),
		BytesQueued: c.BytesQueued.Load(), BytesDone: c.BytesDone.Load(),
		Copied: c.Copied.Load(), Skipped: c.Skipped.Load(), Deleted: c.Deleted.Load(), Failed: c.Failed.Load(),
		BytesRead: c.BytesRead.Load(), BytesWritten: c.BytesWritten.Load(),
	}
}

// Summary reports the run of job that started at started.
func (c *Counters) Summary(job string, dryRun bool, started time.Time) Summary {
	n := c.Counts()
	c.mu.Lock()
	defer c.mu.Unlock()
	return Summary{
		Job:          job,
		DryRun:       dryRun,
		Copied:       n.Copied,
		Skipped:      n.Skipped,
		Deleted:      n.Deleted,
		Failed:       n.Failed,
		BytesRead:    n.BytesRead,
		BytesWritten: n.BytesWritten,
		Seconds:      math.Round(time.Since(started).Seconds()*1000) / 1000,
		Failures:     append([]Failure(nil), c.failures...),
		Started:      started,
	}
}

// Counts is a snapshot of Counters.
type Counts struct {
	ObjectsQueued, ObjectsDone, BytesQueued, BytesDone int64
	Copied, Skipped, Deleted, Failed                   int64
	BytesRead, BytesWritten                            int64
}

// Minus is what happened from u to n.
func (n Counts) Minus(u Counts) Counts {
	return Counts{
		ObjectsQueued: n.ObjectsQueued - u.ObjectsQueued, ObjectsDone: n.ObjectsDone - u.ObjectsDone,
		BytesQueued: n.BytesQueued - u.BytesQueued, BytesDone: n.BytesDone - u.BytesDone,
		Copied: n.Copied - u.Copied, Skipped: n.Skipped - u.Skipped, Deleted: n.Deleted - u.Deleted, Failed: n.Failed - u.Failed,
		BytesRead: n.BytesRead - u.BytesRead, BytesWritten: n.BytesWritten - u.BytesWritten,
	}
}

// Record is the journal run record of what happened from started to
// finished; err is the run's error, nil when it had none.
func (n Counts) Record(started, finished time.Time, complete bool, err error) journal.Run {
	rec := journal.Run{
		Started: started, Finished: finished, Complete: complete,
		Copied: n.Copied, Skipped: n.Skipped, Deleted: n.Deleted, Failed: n.Failed,
		BytesRead: n.BytesRead, BytesWritten: n.BytesWritten,
	}
	if err != nil {
		rec.Error = err.Error()
	}
	return rec
}

// Failure is one object that could not be replicated or restored.
type Failure struct {
	Key   string `json:"key"`
	Op    string `json:"op"`
	Error string `json:"error"`
}

// Summary reports a run.
type Summary struct {
	Job          string    `json:"job"`
	DryRun       bool      `json:"dry_run,omitempty"`
	Copied       int64     `json:"copied"`
	Skipped      int64     `json:"skipped"`
	Deleted      int64     `json:"deleted"`
	Failed       int64     `json:"failed"`
	BytesRead    int64     `json:"bytes_read"`
	BytesWritten int64     `json:"bytes_written"`
	Seconds      float64   `json:"seconds"`
	Failures     []Failure `json:"failures,omitempty"`
	Error        string    `json:"error,omitempty"`
	Started      time.Time `json:"-"`
}
