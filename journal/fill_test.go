package journal

import (
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Replicas recorded in listing order, as a scan's concurrent workers
// record them, fill the index pages: the index, which every scan reads in
// full, is not left half empty.
func TestIndexPagesStayFull(t *testing.T) {
	j := openTemp(t)
	jb := j.Section("fill")
	const n, workers = 20000, 16
	for start := 0; start < n; start += 256 {
		var batch []Change
		for i := start; i < min(start+256, n); i++ {
			batch = append(batch, put(fmt.Sprintf("ledgers/2026/%08d.parquet", i)))
		}
		batch = enqueue(t, jb, batch...)
		var wg sync.WaitGroup
		work := make(chan Change)
		for range workers {
			wg.Go(func() {
				for c := range work {
					if err := jb.Complete(c, record(c.Key)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		for _, c := range batch {
			work <- c
		}
		close(work)
		wg.Wait()
	}
	var st bolt.BucketStats
	if err := j.db.View(func(tx *bolt.Tx) error {
		st = tx.Bucket(bucketJobs).Bucket([]byte("fill")).Bucket(bucketIndex).Stats()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.8 {
		t.Errorf("index leaf pages are %.0f%% full (%d of %d bytes), want at least 80%%", 100*fill, st.LeafInuse, st.LeafAlloc)
	}
}
