package drill

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// TestReadJournal: on a real journal, the run history becomes lag points
// (from the start of the previous complete run to the end of each), the
// index of a watch job a lag histogram of the objects modified since the
// oldest run kept (backfill excluded), and destination keys map back to
// source keys.
func TestReadJournal(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	jb := j.Section("ledgers")
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, r := range []journal.Run{
		{Started: t0, Finished: t0.Add(time.Minute), Complete: true},
		{Started: t0.Add(10 * time.Minute), Finished: t0.Add(11 * time.Minute)}, // incomplete: skipped
		{Started: t0.Add(20 * time.Minute), Finished: t0.Add(22 * time.Minute), Complete: true, Failed: 2},
	} {
		if err := jb.AddRun(r); err != nil {
			t.Fatal(err)
		}
	}
	for key, rec := range map[string]journal.Record{
		"old":  {MTime: t0.Add(-time.Hour), ReplicatedAt: t0.Add(time.Minute), DestKey: "d-old"}, // backfill
		"fast": {MTime: t0.Add(30 * time.Minute), ReplicatedAt: t0.Add(30*time.Minute + 400*time.Millisecond), DestKey: "d-fast"},
		"slow": {MTime: t0.Add(30 * time.Minute), ReplicatedAt: t0.Add(50 * time.Minute), DestKey: "d-slow"},
	} {
		if err := jb.Complete(journal.Change{Key: key, Op: journal.OpPut}, rec); err != nil {
			t.Fatal(err)
		}
	}
	f, err := ReadJournal(jb, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.History) != 1 || f.History[0].Seconds != 22*60 || f.History[0].Failed != 2 || !f.History[0].Time.Equal(t0.Add(22*time.Minute)) {
		t.Errorf("history %+v, want one point of 1320 s at the end of the third run", f.History)
	}
	if f.HistogramObjects != 2 || len(f.Histogram) != len(LagBuckets)+1 {
		t.Fatalf("histogram of %d objects, %d buckets", f.HistogramObjects, len(f.Histogram))
	}
	for i, b := range f.Histogram {
		want := 0
		switch {
		case b.LESeconds != nil && *b.LESeconds == 0.5: // 0.4 s
			want = 1
		case b.LESeconds == nil: // 20 min, beyond the last bound
			want = 1
		}
		if b.Count != want {
			t.Errorf("bucket %d (le %v): %d, want %d", i, b.LESeconds, b.Count, want)
		}
	}
	if f.Keys["d-slow"] != "slow" || len(f.Keys) != 3 {
		t.Errorf("keys %v", f.Keys)
	}
	if f, err := ReadJournal(jb, false); err != nil || f.Histogram != nil {
		t.Errorf("a scan job got a histogram: %v, %v", f.Histogram, err)
	}
}
