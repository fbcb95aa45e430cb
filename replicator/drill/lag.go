package drill

import (
	"math"
	"slices"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// LagBuckets are the upper bounds, in seconds, of the replication-lag
// histogram: watch's voyageur_replication_lag_seconds buckets.
var LagBuckets = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900}

// LagBucket is one bucket of the lag histogram: the objects whose lag was
// above the previous bucket's bound and at most LESeconds (null: beyond
// the last bound).
type LagBucket struct {
	LESeconds *float64 `json:"le_seconds"`
	Count     int      `json:"count"`
}

// LagPoint is one run of the journal's history: when it finished, and the
// longest a change could have waited for it (from the start of the
// previous complete run, whose listing may just have missed it, to the end
// of this one).
type LagPoint struct {
	Time    time.Time `json:"time"`
	Seconds float64   `json:"seconds"`
	Failed  int64     `json:"failed"`
}

// indexLagLimit bounds the index entries read for the histogram, and
// pendingLimit the journal queue items read for the RPO.
const (
	indexLagLimit = 100_000
	pendingLimit  = 100
)

// JournalFacts is what a drill reads from the job's journal: the oldest
// queued changes, the run history as lag points, for watch jobs the lag
// histogram, and the original key of each replica (to name a replica
// whose META does not decrypt). It is read up front, so that the journal
// is not held (and a scheduled sync not locked out) while the sample is
// restored.
type JournalFacts struct {
	Pending          []journal.Change
	History          []LagPoint
	Histogram        []LagBucket
	HistogramObjects int
	Keys             map[string]string // destination key → source key
}

// ReadJournal reads a job's journal for a drill; watch asks for the lag
// histogram. It reads at most indexLagLimit index entries.
func ReadJournal(jb *journal.Section, watch bool) (*JournalFacts, error) {
	f := JournalFacts{Keys: map[string]string{}}
	var err error
	if f.Pending, err = jb.Pending(0, pendingLimit); err != nil {
		return nil, err
	}
	runs, err := jb.Runs(0)
	if err != nil {
		return nil, err
	}
	slices.Reverse(runs) // oldest first
	f.History = lagHistory(runs)
	// Lag counts only objects modified since the oldest run kept: older
	// ones were copied by a first sync, which is backfill, not lag.
	var since time.Time
	counts := make([]int, len(LagBuckets)+1)
	if watch && len(runs) > 0 {
		// Stores give modification times to the second.
		since = runs[0].Started.Truncate(time.Second)
	}
	after := ""
	for read := 0; read < indexLagLimit; {
		page, err := jb.IndexRange("", after, 1000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			read++
			if e.DestKey != "" {
				f.Keys[e.DestKey] = e.Key
			}
			if since.IsZero() || e.MTime.IsZero() || e.ReplicatedAt.IsZero() || e.MTime.Before(since) {
				continue
			}
			lag := max(e.ReplicatedAt.Sub(e.MTime).Seconds(), 0)
			i, _ := slices.BinarySearch(LagBuckets, lag)
			counts[i]++
			f.HistogramObjects++
		}
		after = page[len(page)-1].Key
	}
	if !since.IsZero() {
		f.Histogram = make([]LagBucket, len(counts))
		for i, c := range counts {
			f.Histogram[i].Count = c
			if i < len(LagBuckets) {
				f.Histogram[i].LESeconds = &LagBuckets[i]
			}
		}
	}
	return &f, nil
}

// lagHistory turns the run history (oldest first) into lag points.
func lagHistory(runs []journal.Run) []LagPoint {
	out := []LagPoint{}
	var prev time.Time
	for _, r := range runs {
		if !r.Complete {
			continue
		}
		if !prev.IsZero() {
			out = append(out, LagPoint{Time: r.Finished.UTC(), Seconds: round(r.Finished.Sub(prev).Seconds()), Failed: r.Failed})
		}
		prev = r.Started
	}
	return out
}

// round keeps reports readable: figures to the millisecond.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }
