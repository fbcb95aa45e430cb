package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
)

// TestRouteChanged: a job pointed at another destination (or source)
// than its journal state was built for is refused, instead of reporting
// the new, empty destination as complete; a dry run records nothing.
func TestRouteChanged(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("a"), backends.PutOptions{})

	// A dry run first: it records no target, so the next run may differ.
	e.Job.Route = "src:b/in/ -> elsewhere:b/out/"
	e.sync(t, Options{DryRun: true})
	e.Job.Route = "src:b/in/ -> dst:b/out/"
	if s := e.sync(t, Options{}); s.Copied != 1 {
		t.Fatalf("first run: %+v", s)
	}

	for _, moved := range []replicator.Job{
		{Route: "src:b/in/ -> dst:other/out/"},
		{Route: "other:b/in/ -> dst:b/out/"},
	} {
		job := e.Job
		job.Route = moved.Route
		job.DestPrefix = "moved/"
		s, err := Sync(context.Background(), e.J, job, Options{})
		if !errors.Is(err, ErrRouteChanged) || s.Copied != 0 || s.Skipped != 0 {
			t.Errorf("%s: %+v, %v; want ErrRouteChanged and nothing done", moved.Route, s, err)
		}
	}

	// The same names over another address keep the state.
	if s := e.sync(t, Options{}); s.Skipped != 1 {
		t.Errorf("unchanged target: %+v", s)
	}
	// Without Route, the buckets' names stand for it.
	e.Job.Route = ""
	if _, err := Sync(context.Background(), e.J, e.Job, Options{}); !errors.Is(err, ErrRouteChanged) {
		t.Errorf("names of the buckets instead of the configured ones: %v, want ErrRouteChanged", err)
	}
}
