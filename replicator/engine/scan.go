package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// indexPage is how many index entries one read transaction returns while the
// scan merges the index with the listing.
const indexPage = 1000

// indexCursor walks the journal index in key order, a page at a time, so the
// merge with the source listing holds one page in memory, and no read
// transaction stays open while workers write.
type indexCursor struct {
	jb     *journal.Section
	prefix string
	// rng bounds the keys walked: a shard's index entries outside its
	// range are not its business.
	rng  replicator.KeyRange
	page []journal.IndexEntry
	pos  int
	done bool
}

func (c *indexCursor) peek() (*journal.IndexEntry, error) {
	if c.pos < len(c.page) {
		return &c.page[c.pos], nil
	}
	if c.done {
		return nil, nil
	}
	after := c.rng.After
	if len(c.page) > 0 {
		after = c.page[len(c.page)-1].Key
	}
	page, err := c.jb.IndexRange(c.prefix, after, indexPage)
	if err != nil {
		return nil, err
	}
	if c.rng.Bounded {
		n, found := slices.BinarySearchFunc(page, c.rng.Upto, func(e journal.IndexEntry, k string) int { return strings.Compare(e.Key, k) })
		if found {
			n++ // upto is in the range
		}
		page = page[:n]
	}
	c.page, c.pos = page, 0
	if len(page) == 0 {
		c.done = true
		return nil, nil
	}
	return &c.page[0], nil
}

func (c *indexCursor) next() { c.pos++ }

// scan merge-joins the streamed source listing with the index (both in key
// order): new and changed keys are queued and copied as the listing goes;
// index keys missing from a complete listing become delete candidates.
// It reports whether the listing completed.
func (r *run) scan(ctx context.Context) (bool, error) {
	rng := r.keyRange()
	idx := &indexCursor{jb: r.jb, prefix: r.job.SourcePrefix, rng: rng}
	dels, err := r.newDeletePlan()
	if err != nil {
		return false, err
	}
	rebuild, err := r.rebuilding(ctx)
	if err != nil {
		return false, err
	}
	reason := "scan"
	// names, in a rebuild that looks for replicas whose source key is gone,
	// collects the replica names the listing and the index account for.
	var names *replicaNames
	if rebuild {
		reason = reasonRebuild
		if r.findsOrphans() {
			names = newReplicaNames()
		}
	}
	// gone takes an index entry the listing did not return.
	gone := func(e *journal.IndexEntry) {
		if names != nil {
			names.add(cmp.Or(e.DestKey, r.job.DestKey(e.Key)))
		}
		dels.add(r, e)
	}
	var batch []journal.Change
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		defer func() { batch = batch[:0] }()
		if r.opts.DryRun {
			for _, c := range batch {
				r.log.Info("would copy", "key", c.Key, "size", c.Size)
				r.count.Copied.Add(1)
			}
			return nil
		}
		return r.enqueue(ctx, batch)
	}

	listed := 0
	for obj, lerr := range r.job.Source.List(ctx, backends.ListOptions{Prefix: r.job.SourcePrefix, StartAfter: rng.After}) {
		if lerr != nil {
			err = fmt.Errorf("list source %s/%s: %w", r.job.Source.Name(), r.job.SourcePrefix, lerr)
			break
		}
		if rng.Past(obj.Key) {
			break // the next shard's keys
		}
		if names != nil {
			names.add(r.job.DestKey(obj.Key))
		}
		var rec *journal.IndexEntry
		for {
			e, ierr := idx.peek()
			if ierr != nil {
				return false, ierr
			}
			if e == nil || e.Key > obj.Key {
				break
			}
			idx.next()
			if e.Key == obj.Key {
				rec = e
				break
			}
			gone(e)
		}
		if !r.job.Filter.Match(strings.TrimPrefix(obj.Key, r.job.SourcePrefix)) {
			continue
		}
		listed++
		if rec != nil && r.upToDate(rec.Record, obj) {
			// Finished leftovers of an earlier run are counted as copied.
			if rec.ReplicatedAt.Before(r.started) {
				r.count.Skipped.Add(1)
			}
			continue
		}
		batch = append(batch, journal.Change{
			Key: obj.Key, Op: journal.OpPut, VersionID: obj.VersionID,
			ETag: obj.ETag, Size: obj.Size, Reason: reason,
		})
		if len(batch) >= enqueueBatch {
			if ferr := flush(); ferr != nil {
				return false, ferr
			}
		}
	}
	// Changes found before a listing error are real: queue them anyway.
	if ferr := flush(); ferr != nil && err == nil {
		err = ferr
	}
	if err == nil {
		// Index keys after the last listed key are gone from the source too.
		for {
			e, ierr := idx.peek()
			if ierr != nil {
				err = ierr
				break
			}
			if e == nil {
				break
			}
			idx.next()
			gone(e)
		}
	}
	r.pending.Wait()
	if err != nil {
		return false, err
	}
	if names != nil {
		if err := r.addOrphans(ctx, dels, names); err != nil {
			return true, err
		}
	}
	if err := r.propagateDeletes(ctx, dels, listed); err != nil {
		// A rebuild's orphans are in no index: the cursor stays, and the
		// next run looks for them again.
		return true, err
	}
	if rebuild {
		// Every listed key is now indexed, or queued for the rebuild, and
		// every replica whose source key is gone is deleted or queued.
		if err := r.jb.SetValue(valueRebuild, nil); err != nil {
			return false, err
		}
		r.log.Info("index rebuilt from the destination", "replicas_recognized", r.adopted.Load(), "replicas_without_source", dels.orphans)
	}
	return true, nil
}

// deletePlan collects delete candidates of one scan. Memory is bounded by
// the limit: past it only the count grows, since the run will refuse.
type deletePlan struct {
	limit    int
	explicit bool
	count    int
	changes  []journal.Change
	// orphans counts the candidates a rebuild found at the destination
	// (addOrphans); hashed holds those whose source key is unknown (hashed
	// names), to delete by their replica's name.
	orphans int
	hashed  []string
}

func (r *run) newDeletePlan() (*deletePlan, error) {
	p := &deletePlan{}
	if r.job.Deletes != replicator.DeletesPropagate {
		return p, nil
	}
	n, err := r.jb.IndexCount()
	if err != nil {
		return nil, err
	}
	p.limit, p.explicit = r.deleteLimit(n)
	return p, nil
}

// deleteLimit is how many deletes a run may make among n replicas.
func (r *run) deleteLimit(n int) (limit int, explicit bool) {
	switch {
	case r.job.MaxDelete > 0:
		return r.job.MaxDelete, true
	case r.job.MaxDelete < 0 || r.job.MaxDeletePercent > 0:
		return int(float64(n) * r.job.MaxDeletePercent / 100), true
	}
	return max(100, n/10), false
}

// addOrphan adds the replica destKey of a key gone from the source, found
// by a rebuild (key "" when its name does not tell it). The journal did not
// index it, so the limit is counted again over the indexed replicas and
// the orphans found so far, the replicas an index would have held. Each
// orphan adds at most one to the limit, so a candidate dropped for memory
// is never below the final limit: the run refuses.
func (p *deletePlan) addOrphan(r *run, indexed int, key, destKey string) {
	p.orphans++
	p.count++
	p.limit, p.explicit = r.deleteLimit(indexed + p.orphans)
	switch {
	case p.count > p.limit:
	case key == "":
		p.hashed = append(p.hashed, destKey)
	default:
		p.changes = append(p.changes, journal.Change{Key: key, Op: journal.OpDelete, Reason: reasonRebuild})
	}
}

func (p *deletePlan) add(r *run, e *journal.IndexEntry) {
	if r.job.Deletes != replicator.DeletesPropagate || !r.job.Filter.Match(strings.TrimPrefix(e.Key, r.job.SourcePrefix)) {
		return
	}
	p.count++
	if p.count <= p.limit {
		p.changes = append(p.changes, journal.Change{Key: e.Key, Op: journal.OpDelete, Size: 0, Reason: "scan"})
	}
}

// propagateDeletes acts on the candidates of a complete listing, or refuses
// all of them when there are more than the limit, or when the source looks
// empty and the limit was not set explicitly: a source that suddenly lists
// nothing is an outage or a mistake, not an instruction to empty the replica.
func (r *run) propagateDeletes(ctx context.Context, p *deletePlan, listed int) error {
	if p.count == 0 {
		return nil
	}
	if p.count > p.limit {
		return fmt.Errorf("refusing to delete %d replicas of job %s: more than max_delete (%d); nothing was deleted: %w", p.count, r.job.Name, p.limit, ErrTooManyDeletes)
	}
	if listed == 0 && !p.explicit {
		return fmt.Errorf("refusing to delete all %d replicas of job %s: the source listed no objects (set max_delete to allow it); nothing was deleted: %w", p.count, r.job.Name, ErrTooManyDeletes)
	}
	if r.opts.DryRun {
		for _, c := range p.changes {
			r.log.Info("would delete", "key", c.Key)
			r.count.Deleted.Add(1)
		}
		for _, destKey := range p.hashed {
			r.log.Info("would delete replica: no source key has its name", "replica", destKey)
			r.count.Deleted.Add(1)
		}
		return nil
	}
	for start := 0; start < len(p.changes); start += enqueueBatch {
		if err := r.enqueue(ctx, p.changes[start:min(start+enqueueBatch, len(p.changes))]); err != nil {
			return err
		}
	}
	r.pending.Wait()
	failed := 0
	for _, destKey := range p.hashed {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.deleteOrphan(ctx, destKey) != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("job %s: %d replicas whose source key is gone could not be deleted; the next run tries again", r.job.Name, failed)
	}
	return nil
}

// enqueue records a batch of changes durably (one transaction) and
// dispatches them, but for keys that already failed in this run: those stay
// queued for the next.
func (r *run) enqueue(ctx context.Context, batch []journal.Change) error {
	if err := r.jb.Enqueue(batch); err != nil {
		return err
	}
	for _, c := range batch {
		r.count.Queue(c.Size)
		if r.failedEarlier(c.Key) {
			continue
		}
		if err := r.dispatch(ctx, c); err != nil {
			return err
		}
	}
	return nil
}
