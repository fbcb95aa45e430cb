package recovery

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator/engine"
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
	small, big := []byte("small plain object"), testenv.RandBytes(2*ps+77, 3)
	testenv.Put(t, e.Src, "in/small", small, backends.PutOptions{})
	testenv.Put(t, e.Src, "in/big", big, backends.PutOptions{})
	e.sync(t, engine.Options{})
	dst := e.Job.Dest

	for _, key := range []string{"out/small", "out/big"} {
		e.Job.Dest = damaging{dst, key}
		dir, s, err := restoreTo(t, e, RestoreOptions{})
		if err != nil || s.Failed != 1 || s.Copied != 1 || !strings.Contains(s.Failures[0].Error, "do not match the replica's ETag") {
			t.Errorf("%s damaged: %+v %v", key, s, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "in", filepath.Base(key))); err == nil {
			t.Errorf("damaged %s restored", key)
		}
	}

	e.Job.Dest = kmsETags{dst}
	dir, s, err := restoreTo(t, e, RestoreOptions{})
	if err != nil || s.Copied != 2 || s.Failed != 0 {
		t.Fatalf("restore with non-MD5 ETags: %+v %v", s, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "in/small")); !bytes.Equal(got, small) {
		t.Errorf("small = %q", got)
	}
	e.Job.Dest = kmsETags{damaging{dst, "out/small"}}
	if _, s, _ := restoreTo(t, e, RestoreOptions{}); s.Failed != 1 || s.Failures[0].Key != "in/small" {
		t.Errorf("damaged bytes behind non-MD5 ETags: %+v", s)
	}
}

// TestRestoreComparesExisting: without overwrite, a file in the way is
// compared with the replica's bytes: the same bytes (under another
// modification time, for an object whose ETag is no MD5) are skipped; a
// longer or shorter file is other content, left alone; overwrite replaces
// it without reading it.
func TestRestoreComparesExisting(t *testing.T) {
	e := newEnv(t)
	big := testenv.RandBytes(2*ps+5, 8)
	testenv.Put(t, e.Src, "in/big", big, backends.PutOptions{})
	e.sync(t, engine.Options{})
	if _, info := testenv.Get(t, e.Dst, "out/big"); !strings.Contains(info.ETag, "-") {
		t.Fatalf("replica ETag %q is not a multipart one", info.ETag)
	}
	dir := t.TempDir()
	target, err := NewDirTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	path := filepath.Join(dir, "in/big")
	os.MkdirAll(filepath.Dir(path), 0o700)
	for _, c := range []struct {
		name         string
		data         []byte
		skip, failed int64
	}{
		{"same bytes", big, 1, 0},
		{"one byte more", append(slices.Clone(big), 0), 0, 1},
		{"one byte less", big[:len(big)-1], 0, 1},
		{"another byte", append(slices.Clone(big[:len(big)-1]), big[len(big)-1]^1), 0, 1},
	} {
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Restore(context.Background(), e.Job, target, RestoreOptions{})
		if err != nil || s.Skipped != c.skip || s.Failed != c.failed {
			t.Errorf("%s: %+v %v", c.name, s, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, c.data) {
			t.Errorf("%s: the file was changed", c.name)
		}
	}
	if s, err := Restore(context.Background(), e.Job, target, RestoreOptions{Overwrite: true}); err != nil || s.Copied != 1 {
		t.Errorf("overwrite: %+v %v", s, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, big) {
		t.Error("overwrite did not restore the replica's bytes")
	}
}
