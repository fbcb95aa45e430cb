package replicator

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
)

// kmsETags is a destination whose ETags are not the MD5 of the bytes, as
// on AWS with SSE-KMS: 32 hex digits all the same.
type kmsETags struct{ backends.Bucket }

func (k kmsETags) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	rc, info, err := k.Bucket.Get(ctx, key, opts)
	info.ETag = strings.Repeat("ab", 16)
	return rc, info, err
}

// damaging flips one byte of what Get returns for one key.
type damaging struct {
	backends.Bucket
	key string
}

func (d damaging) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	rc, info, err := d.Bucket.Get(ctx, key, opts)
	if err != nil || key != d.key {
		return rc, info, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if len(b) > 0 {
		b[len(b)/2] ^= 1
	}
	return io.NopCloser(bytes.NewReader(b)), info, err
}

// TestPlainRestoreChecksBytes: a plain restore compares the bytes with the
// replica's ETag, single-part and multipart; on a store whose ETags are
// not MD5s, the replica's fingerprint naming their MD5 lets them pass,
// and damaged bytes still fail.
func TestPlainRestoreChecksBytes(t *testing.T) {
	e := newEnv(t)
	small, big := []byte("small plain object"), randBytes(2*ps+77, 3)
	put(t, e.src, "in/small", small, backends.PutOptions{})
	put(t, e.src, "in/big", big, backends.PutOptions{})
	e.sync(t, Options{})
	dst := e.job.Dest

	for _, key := range []string{"out/small", "out/big"} {
		e.job.Dest = damaging{dst, key}
		dir, s, err := restoreTo(t, e, RestoreOptions{})
		if err != nil || s.Failed != 1 || s.Copied != 1 || !strings.Contains(s.Failures[0].Error, "do not match the replica's ETag") {
			t.Errorf("%s damaged: %+v %v", key, s, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "in", filepath.Base(key))); err == nil {
			t.Errorf("damaged %s restored", key)
		}
	}

	e.job.Dest = kmsETags{dst}
	dir, s, err := restoreTo(t, e, RestoreOptions{})
	if err != nil || s.Copied != 2 || s.Failed != 0 {
		t.Fatalf("restore with non-MD5 ETags: %+v %v", s, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "in/small")); !bytes.Equal(got, small) {
		t.Errorf("small = %q", got)
	}
	e.job.Dest = kmsETags{damaging{dst, "out/small"}}
	if _, s, _ := restoreTo(t, e, RestoreOptions{}); s.Failed != 1 || s.Failures[0].Key != "in/small" {
		t.Errorf("damaged bytes behind non-MD5 ETags: %+v", s)
	}
}
