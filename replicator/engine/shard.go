package engine

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/voyageur-ca/voyageur/replicator"
)

// ErrShardChanged reports a journal whose index was built for other keys
// than the shard now asks for.
var ErrShardChanged = errors.New("the journal was built for another shard")

// shardValue names the journal value holding the source keys its index
// covers (absent: all of them).
const shardValue = "shard"

// keyRange returns the source keys this run owns.
func (r *run) keyRange() replicator.KeyRange {
	if r.job.Shard == nil {
		return replicator.KeyRange{}
	}
	return r.job.Shard.Range
}

// checkShard ties the journal's index to the keys it covers. An index
// that covers the shard's range knows every replica in it, so the shard's
// copies and deletes are right; it keeps the range it covers, since its
// entries outside this shard's are still true enough to run the wider
// range again (a stale one costs a copy, never a delete). An index that
// covers less would miss the deletes of keys it never saw, and is refused
// unless it is empty: a fresh journal records this shard's range and
// rebuilds its index from the destination's fingerprints, finding those
// deletes by their replicas (addOrphans) where names tell the keys.
func (r *run) checkShard() error {
	want := r.keyRange()
	raw, err := r.jb.Value(shardValue)
	if err != nil {
		return err
	}
	n, err := r.jb.IndexCount()
	if err != nil {
		return err
	}
	q, err := r.jb.QueueLen()
	if err != nil {
		return err
	}
	have := replicator.KeyRange{} // no value: the index of an unsharded run
	if raw != nil {
		if err := json.Unmarshal(raw, &have); err != nil {
			return fmt.Errorf("job %s: read the journal's shard range: %w", r.job.Name, err)
		}
	}
	fresh := n+q == 0
	if !fresh && have.Covers(want) {
		return nil
	}
	if !fresh {
		return fmt.Errorf("job %s: %w: its index covers the source keys %s, this run (shard %s) owns %s; "+
			"rerun with the layout this journal was built for, or give each shard a new journal (--journal): "+
			"its first run rebuilds the index from the destination's fingerprints and copies nothing again "+
			"(with hashed names, run the old layout once just before, so that no delete is pending: "+
			"a shard cannot tell the replicas of keys deleted since)",
			r.job.Name, ErrShardChanged, have, r.shardName(), want)
	}
	if r.opts.DryRun {
		return nil
	}
	if want.Whole() {
		return r.jb.SetValue(shardValue, nil)
	}
	raw, err = json.Marshal(want)
	if err != nil {
		return err
	}
	return r.jb.SetValue(shardValue, raw)
}

func (r *run) shardName() string {
	if r.job.Shard == nil {
		return "unsharded"
	}
	return r.job.Shard.Shard.String()
}
