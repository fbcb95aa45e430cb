package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/voyageur-ca/voyageur/backends"
)

// ErrRouteChanged reports a job whose source or destination is not the
// one its journal state was built for.
var ErrRouteChanged = errors.New("the job's source or destination changed")

// ErrDestinationEmpty reports a job whose index holds replicas while its
// destination prefix holds nothing: an emptied bucket, or an endpoint now
// pointing at another store. Syncing would skip every indexed object and
// call the empty replica complete.
var ErrDestinationEmpty = errors.New("the destination holds none of the replicas the journal indexes")

// routeCursor names the journal value holding a job's RouteName (its
// name, "target", is older than the word).
const routeCursor = "target"

// checkRoute ties the job's journal state to its source and destination.
// The index says which source objects are replicated, where; pointed at
// another destination, it would report a new, empty bucket as complete
// and copy nothing into it. The first run records the route (a dry run
// only reads it); a later run with another one is refused.
func (r *run) checkRoute(ctx context.Context) error {
	if err := r.checkRecordedRoute(); err != nil {
		return err
	}
	return r.checkReplicasThere(ctx)
}

// checkRecordedRoute compares the route the journal recorded with the
// job's.
func (r *run) checkRecordedRoute() error {
	want := r.job.RouteName()
	got, err := r.jb.Value(routeCursor)
	if err != nil {
		return err
	}
	switch {
	case got == nil && r.opts.DryRun:
		return nil
	case got == nil:
		return r.jb.SetValue(routeCursor, []byte(want))
	case string(got) != want:
		return fmt.Errorf("job %s: %w: the journal holds the state of %s, the config now says %s; "+
			"to replicate there, give the job a new name (its first run rebuilds the index from the replicas already there), "+
			"or put the old source and destination back", r.job.Name, ErrRouteChanged, got, want)
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
		if err != nil && !backends.UploadListingRefused(err) {
			return fmt.Errorf("list destination %s/%s: %w", r.job.Dest.Name(), r.job.DestPrefix, err)
		}
		return nil // one object (or a refusal) is enough
	}
	return fmt.Errorf("job %s: %w: the journal indexes %d replicas at %s/%s, which lists no object; "+
		"if the endpoint now points at another store, put its url back; "+
		"to copy everything again here, give the job a new name (its first run copies every object)",
		r.job.Name, ErrDestinationEmpty, n, r.job.Dest.Name(), r.job.DestPrefix)
}
