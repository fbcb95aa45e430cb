package recovery

import (
	"context"
	"testing"

	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

const ps = testenv.PS

// env is the test job; sync makes the replica the tests read back.
type env struct{ *testenv.Env }

func newEnv(t *testing.T) *env { return &env{testenv.New(t)} }

func (e *env) sync(t *testing.T, opts engine.Options) replicator.Summary {
	t.Helper()
	s, err := engine.Sync(context.Background(), e.J, e.Job, opts)
	if err != nil {
		t.Fatalf("sync: %v (summary %+v)", err, s)
	}
	return s
}
