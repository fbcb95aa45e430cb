package replicator

import (
	"errors"
	"fmt"
)

// ErrTargetChanged reports a job whose source or destination is not the
// one its journal state was built for.
var ErrTargetChanged = errors.New("the job's source or destination changed")

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
func (r *run) checkTarget() error {
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
