package recovery

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// kmsListing lists ETags that are not the MD5 of the bytes, as AWS does
// for objects under SSE-KMS.
type kmsListing struct{ backends.Bucket }

func (k kmsListing) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		for o, err := range k.Bucket.List(ctx, opts) {
			if err == nil && !strings.Contains(o.ETag, "-") {
				o.ETag = strings.Repeat("cd", 16)
			}
			if !yield(o, err) {
				return
			}
		}
	}
}

// TestVerifyPlainWithoutMD5ETags: on a destination whose ETags are not
// MD5s, equal plain replicas are not reported (their bytes are compared),
// and a replica changed behind its fingerprint is corrupt even when the
// sample leaves it out.
func TestVerifyPlainWithoutMD5ETags(t *testing.T) {
	e := newEnv(t)
	for i := range 10 {
		testenv.Put(t, e.Src, fmt.Sprintf("in/%d.csv", i), []byte(strings.Repeat(fmt.Sprint(i), 100)), backends.PutOptions{})
	}
	e.sync(t, engine.Options{})
	dst := e.Job.Dest
	e.Job.Dest = kmsListing{dst}
	r, err := Verify(context.Background(), e.Job, VerifyOptions{})
	if err != nil || !r.OK() || r.Deep != 10 {
		t.Fatalf("equal replicas behind non-MD5 ETags: %+v %v", r, err)
	}

	data, info := testenv.Get(t, dst, "out/7.csv")
	data[3] ^= 1
	testenv.Put(t, dst, "out/7.csv", data, backends.PutOptions{ContentType: info.ContentType, Metadata: info.Metadata})
	e.Job.Dest = dst
	for range 5 {
		r, err = Verify(context.Background(), e.Job, VerifyOptions{Sample: 1})
		if err != nil || len(r.Corrupt) != 1 || r.Corrupt[0].Key != "in/7.csv" || len(r.Stale) != 0 {
			t.Fatalf("a tampered replica outside the sample: %+v %v", r, err)
		}
	}
	if r.Corrupt[0].Error != errBytesDiffer.Error() {
		t.Errorf("corrupt because %q", r.Corrupt[0].Error)
	}
}
