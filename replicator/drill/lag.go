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

// indexLagLimit bounds the index entries read for the histogram.
const indexLagLimit = 100_000

// lagHistory turns the journal's run history into lag points, oldest first.
func lagHistory(jb *journal.Job) ([]LagPoint, error) {
	runs, err := jb.Runs(0)
	if err != nil {
		return nil, err
	}
	slices.Reverse(runs) // oldest first
	out := []LagPoint{}
	var prev time.Time
	for _, r := range runs {
		if !r.Complete {
			continue
		}
		if !prev.IsZero() {
			out = append(out, LagPoint{Time: r.Finished.UTC(), Seconds: r.Finished.Sub(prev).Seconds(), Failed: r.Failed})
		}
		prev = r.Started
	}
	return out, nil
}

// lagHistogram counts, from the journal's index, the lag of each replica
// (from its source modification to its replication) for the objects
// modified since the oldest run the journal keeps: older ones were copied
// by a first sync, which is backfill, not lag.
func lagHistogram(jb *journal.Job) ([]LagBucket, int, error) {
	runs, err := jb.Runs(0)
	if err != nil || len(runs) == 0 {
		return nil, 0, err
	}
	since := runs[len(runs)-1].Started
	counts := make([]int, len(LagBuckets)+1)
	n, read, after := 0, 0, ""
	for read < indexLagLimit {
		page, err := jb.IndexRange("", after, 1000)
		if err != nil {
			return nil, 0, err
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			read++
			if e.MTime.IsZero() || e.ReplicatedAt.IsZero() || e.MTime.Before(since) {
				continue
			}
			lag := max(e.ReplicatedAt.Sub(e.MTime).Seconds(), 0)
			i, _ := slices.BinarySearch(LagBuckets, lag)
			counts[i]++
			n++
		}
		after = page[len(page)-1].Key
	}
	out := make([]LagBucket, len(counts))
	for i, c := range counts {
		out[i].Count = c
		if i < len(LagBuckets) {
			out[i].LESeconds = &LagBuckets[i]
		}
	}
	return out, n, nil
}

// round keeps reports readable: figures to the millisecond.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }
