package engine

import (
	"context"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
)

// A caller may leave Transfer zero: the run takes the defaults, and starts
// the default number of workers rather than none (which hung the scan on
// its first dispatch).
func TestSyncWithZeroTransferTakesDefaults(t *testing.T) {
	e := newEnv(t)
	e.Job.Transfer = replicator.Transfer{}
	for _, k := range []string{"a", "b", "c"} {
		testenv.Put(t, e.Src, "in/"+k, testenv.RandBytes(100, 1), backends.PutOptions{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Sync(ctx, e.J, e.Job, Options{})
	if err != nil || s.Copied != 3 {
		t.Fatalf("sync: %+v, %v", s, err)
	}
}
