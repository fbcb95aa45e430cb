package bench

import (
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// paged counts the LIST requests a listing of the synthetic source would
// make on S3: a request per page of 1000 keys, one for an empty listing.
type paged struct {
	synthetic
	lists *atomic.Int64
}

func (p paged) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		n := int64(0)
		defer func() { p.lists.Add(max(1, (n+999)/1000)) }()
		for o, err := range p.synthetic.List(ctx, opts) {
			n++
			if !yield(o, err) {
				return
			}
		}
	}
}

// BenchmarkShards compares the no-op sync of the million synthetic keys
// (plain, into a sink) as 1, 4 and 8 shards run at once, each with its
// journal, split by a shard plan: LIST requests of all shards together,
// the plan's own listing, wall time, and the objects per shard. It writes
// the table into docs/BENCHMARKS.md; -quick runs 100,000 keys and writes
// nothing.
func BenchmarkShards(b *testing.B) {
	n := scaleKeys
	if *quick {
		n = scaleKeys / 10
	}
	ctx := context.Background()
	dir := b.TempDir()
	var rows []string
	for _, shards := range []int{1, 4, 8} {
		var lists atomic.Int64
		job := replicator.Job{Name: "shards", Source: paged{synthetic{n: n}, &lists}, SourcePrefix: "k/", Dest: sink{}, Route: "synthetic:k -> sink"}
		plan, err := replicator.MakeShardPlan(ctx, job, shards)
		if err != nil {
			b.Fatal(err)
		}
		planLists := lists.Swap(0)
		layout, err := plan.Layout(job)
		if err != nil {
			b.Fatal(err)
		}
		journals := make([]*journal.Journal, shards)
		for i := range journals {
			if journals[i], err = journal.Open(filepath.Join(dir, fmt.Sprintf("%d-%d.db", shards, i)), time.Second); err != nil {
				b.Fatal(err)
			}
			defer journals[i].Close()
		}
		runAll := func() ([]replicator.Summary, time.Duration) {
			sums := make([]replicator.Summary, shards)
			errs := make([]error, shards)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range shards {
				wg.Go(func() {
					sj := job
					sj.Shard = &replicator.JobShard{Shard: replicator.Shard{Index: i, Count: shards}, Range: layout.Range(i)}
					sums[i], errs[i] = engine.Sync(ctx, journals[i], sj, engine.Options{})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					b.Fatalf("shard %d/%d: %v", i, shards, err)
				}
			}
			return sums, time.Since(start)
		}
		warm, warmTime := runAll()
		lists.Store(0)
		noop, noopTime := runAll()
		total, lo, hi := int64(0), int64(n), int64(0)
		for i := range shards {
			total += warm[i].Copied
			if noop[i].Copied != 0 || noop[i].Skipped != warm[i].Copied {
				b.Fatalf("no-op shard %d/%d: %+v after copying %d", i, shards, noop[i], warm[i].Copied)
			}
			lo, hi = min(lo, warm[i].Copied), max(hi, warm[i].Copied)
		}
		if total != int64(n) {
			b.Fatalf("%d shards copied %d of %d keys", shards, total, n)
		}
		b.Logf("%d shards: warm %s, no-op %s, %d LIST requests (plan %d), %d–%d objects per shard",
			shards, warmTime.Round(time.Millisecond), noopTime.Round(time.Millisecond), lists.Load(), planLists, lo, hi)
		rows = append(rows, fmt.Sprintf("| %d | %d | %d | %.2f s | %d–%d |", shards, lists.Load(), planLists, noopTime.Seconds(), lo, hi))
		b.ReportMetric(noopTime.Seconds(), fmt.Sprintf("s/noop-%dshards", shards))
		b.ReportMetric(float64(lists.Load()), fmt.Sprintf("lists/noop-%dshards", shards))
	}
	if *quick {
		return
	}
	md := fmt.Sprintf("Run %s on %s; load average: %s. %d keys, plain, into a sink; the shards run at once in one process, each with its journal.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), loadavg(), n) +
		"| shards | LIST requests, all shards | the plan's listing | no-op sync, wall | objects per shard |\n|---:|---:|---:|---:|---:|\n" +
		strings.Join(rows, "\n") + "\n"
	if err := replaceSection(docPath, "shards", md); err != nil {
		b.Fatal(err)
	}
}
