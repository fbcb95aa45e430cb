package replicator

import (
	"context"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
)

// A caller may leave Transfer zero: the run takes the defaults, and starts
// the default number of workers rather than none (which hung the scan on
// its first dispatch).
func TestSyncWithZeroTransferTakesDefaults(t *testing.T) {
	e := newEnv(t)
	e.job.Transfer = Transfer{}
	for _, k := range []string{"a", "b", "c"} {
		put(t, e.src, "in/"+k, randBytes(100, 1), backends.PutOptions{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Sync(ctx, e.j, e.job, Options{})
	if err != nil || s.Copied != 3 {
		t.Fatalf("sync: %+v, %v", s, err)
	}
}
