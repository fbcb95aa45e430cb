package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
)

// TestDestinationProbe: a destination that refuses the run's first request
// (wrong credentials, an unreachable store) fails the run, dry runs
// included, even when nothing changed at the source; one that does not
// implement the call, or a key not allowed to make it, only loses the
// clean-up.
func TestDestinationProbe(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("a"), backends.PutOptions{})
	e.sync(t, Options{})
	dst := e.Job.Dest

	denied := &backends.HTTPError{Status: 403, Code: "SignatureDoesNotMatch"}
	e.Job.Dest = testenv.RefusingUploads{Bucket: dst, Err: denied}
	for _, dry := range []bool{false, true} {
		s, err := Sync(context.Background(), e.J, e.Job, Options{DryRun: dry})
		if !errors.Is(err, denied) || !strings.HasPrefix(err.Error(), "destination ") {
			t.Errorf("dry run %v: %v, want the refusal naming the destination", dry, err)
		}
		if s.Skipped != 0 || s.Copied != 0 {
			t.Errorf("dry run %v: %+v, want nothing scanned", dry, s)
		}
	}

	for i, refusal := range []*backends.HTTPError{{Status: 501, Code: "NotImplemented"}, {Status: 403, Code: "AccessDenied"}} {
		e.Job.Dest = testenv.RefusingUploads{Bucket: dst, Err: refusal}
		testenv.Put(t, e.Src, fmt.Sprintf("in/b%d", i), []byte("b"), backends.PutOptions{})
		if s := e.sync(t, Options{}); s.Copied != 1 || s.Skipped != int64(i+1) {
			t.Errorf("%s to ListMultipartUploads: %+v, want the run to go on", refusal.Code, s)
		}
	}
}

// TestDryRunKeepsStaleUploads: a dry run lists stale uploads but aborts
// none.
func TestDryRunKeepsStaleUploads(t *testing.T) {
	e := newEnv(t)
	up, err := e.Dst.CreateMultipart(context.Background(), "out/orphan", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, Options{DryRun: true})
	n := 0
	for u, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		if err != nil || u.UploadID != up {
			t.Errorf("upload %+v, %v", u, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d uploads after a dry run, want the stale one kept", n)
	}
}
