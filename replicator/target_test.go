package replicator

import (
	"context"
	"errors"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
)

// TestTargetChanged: a job pointed at another destination (or source)
// than its journal state was built for is refused, instead of reporting
// the new, empty destination as complete; a dry run records nothing.
func TestTargetChanged(t *testing.T) {
	e := newEnv(t)
	put(t, e.src, "in/a", []byte("a"), backends.PutOptions{})

	// A dry run first: it records no target, so the next run may differ.
	e.job.Target = "src:b/in/ -> elsewhere:b/out/"
	e.sync(t, Options{DryRun: true})
	e.job.Target = "src:b/in/ -> dst:b/out/"
	if s := e.sync(t, Options{}); s.Copied != 1 {
		t.Fatalf("first run: %+v", s)
	}

	for _, moved := range []Job{
		{Target: "src:b/in/ -> dst:other/out/"},
		{Target: "other:b/in/ -> dst:b/out/"},
	} {
		job := e.job
		job.Target = moved.Target
		job.DestPrefix = "moved/"
		s, err := Sync(context.Background(), e.j, job, Options{})
		if !errors.Is(err, ErrTargetChanged) || s.Copied != 0 || s.Skipped != 0 {
			t.Errorf("%s: %+v, %v; want ErrTargetChanged and nothing done", moved.Target, s, err)
		}
	}

	// The same names over another address keep the state.
	if s := e.sync(t, Options{}); s.Skipped != 1 {
		t.Errorf("unchanged target: %+v", s)
	}
	// Without Target, the buckets' names stand for it.
	e.job.Target = ""
	if _, err := Sync(context.Background(), e.j, e.job, Options{}); !errors.Is(err, ErrTargetChanged) {
		t.Errorf("names of the buckets instead of the configured ones: %v, want ErrTargetChanged", err)
	}
}
