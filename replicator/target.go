package replicator

import (
	"context"
	"errors"
	"fmt"

	"github.com/voyageur-ca/voyageur/backends"
)

// ErrTargetChanged reports a job whose source or destination is not the
// one its journal state was built for.
var ErrTargetChanged = errors.New("the job's source or destination changed")

// ErrDestinationEmpty reports a job whose index holds replicas while its
// destination prefix holds nothing: an emptied bucket, or an endpoint now
// pointing at another store. Syncing would skip every indexed object and
// call the empty replica complete.
var ErrDestinationEmpty = errors.New("the destination holds none of the replicas the journal indexes")

// targetCursor names the journal cursor holding a job's target.
const targetCursor = "target"

// target is what a job's journal state is about: its source and its
// destination, down to the prefixes.
func (j Job) target() string {
	if j.Target != "" {
		return j.Target
	}
	return j.Source.Name() + "/" + j.SourcePrefix + " -> " + j.Dest.Name() + "/" + j.DestPrefix
}

// checkTarget ties the job's journal state to its source and destination.
// The index says which source objects are replicated, where; pointed at
// another destination, it would report a new, empty bucket as complete
// and copy nothing into it. The first run records the target (a dry run
// only reads it); a later run with another one is refused.
func (r *run) checkTarget(ctx context.Context) error {
	if err := r.checkRecordedTarget(); err != nil {
		return err
	}
	return r.checkReplicasThere(ctx)
}

// checkRecordedTarget compares the target the journal recorded with the
// job's.
func (r *run) checkRecordedTarget() error {
	want := r.job.target()
	got, err := r.jb.Cursor(targetCursor)
	if err != nil {
		return err
	}
	switch {
	case got == nil && r.opts.DryRun:
		return nil
	case got == nil:
		return r.jb.SetCursor(targetCursor, []byte(want))
	case string(got) != want:
		return fmt.Errorf("job %s: %w: the journal holds the state of %s, the config now says %s; "+
			"to replicate there, give the job a new name (its first run rebuilds the index from the replicas already there), "+
			"or put the old source and destination back", r.job.Name, ErrTargetChanged, got, want)
	}
	return nil
}

// checkReplicasThere refuses a job whose index is not empty while its
// destination prefix lists nothing, at the price of one listing of at most
// one page. A listing the credentials do not allow proves nothing and is
// let pass; any other listing error stops the run.
func (r *run) checkReplicasThere(ctx context.Context) error {
	n, err := r.jb.IndexCount()
	if err != nil || n == 0 {
		return err
	}
	for _, err := range r.job.Dest.List(ctx, backends.ListOptions{Prefix: r.job.DestPrefix}) {
		if err != nil && !probeTolerable(err) {
			return fmt.Errorf("list destination %s/%s: %w", r.job.Dest.Name(), r.job.DestPrefix, err)
		}
		return nil // one object (or a refusal) is enough
	}
	return fmt.Errorf("job %s: %w: the journal indexes %d replicas at %s/%s, which lists no object; "+
		"if the endpoint now points at another store, put its url back; "+
		"to copy everything again here, give the job a new name (its first run copies every object)",
		r.job.Name, ErrDestinationEmpty, n, r.job.Dest.Name(), r.job.DestPrefix)
}
