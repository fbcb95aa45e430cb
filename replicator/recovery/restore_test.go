package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

func TestCatalogAndRestore(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, true)
	want := map[string][]byte{}
	for i := range 40 {
		key := fmt.Sprintf("in/d%d/f%02d.csv", i%3, i)
		want[key] = bytes.Repeat([]byte{byte(i)}, 100+i)
		testenv.Put(t, e.Src, key, want[key], backends.PutOptions{ContentType: "text/csv"})
	}
	e.sync(t, engine.Options{})
	ids := []age.Identity{id}

	n := 0
	for rep, err := range Catalog(context.Background(), e.Job, CatalogOptions{Identities: ids, Prefix: "in/d1/", Concurrency: 4}) {
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix([]byte(rep.Meta.Key), []byte("in/d1/")) || rep.Meta.ContentType != "text/csv" {
			t.Errorf("catalog entry %+v", rep.Meta)
		}
		n++
	}
	if n != 13 {
		t.Errorf("catalog of in/d1/ listed %d replicas, want 13", n)
	}
	// Stopping early must not leak or block.
	for range Catalog(context.Background(), e.Job, CatalogOptions{Identities: ids, Concurrency: 2}) {
		break
	}

	dir := t.TempDir()
	target, err := NewDirTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	s, err := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: ids}})
	if err != nil || s.Copied != 40 || s.Failed != 0 {
		t.Fatalf("restore: %+v %v", s, err)
	}
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %v", key, err)
		}
	}
	if s, _ := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: ids}}); s.Skipped != 40 {
		t.Errorf("re-run: %+v", s)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{other}}}); err == nil {
		t.Error("restore with a wrong identity succeeded")
	}
}

func TestLocalName(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a\x00b", `a\..\b`} {
		if _, err := localName(bad); err == nil {
			t.Errorf("localName(%q) accepted", bad)
		}
	}
	for _, good := range []string{"a", "a/b/c.csv", "dir/", "é 漢字/x+y&z=1?.txt"} {
		if _, err := localName(good); err != nil {
			t.Errorf("localName(%q): %v", good, err)
		}
	}
}

// countingGets counts the GETs sent to its bucket.
type countingGets struct {
	backends.Bucket
	n atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	c.n.Add(1)
	return c.Bucket.Get(ctx, key, opts)
}

// TestCatalogWrongIdentity: an identity that opens no replica stops the
// catalog at the first one, with one error, for restore, ls and verify
// alike; a corrupt replica is one failed object among the others.
func TestCatalogWrongIdentity(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, true)
	for i := range 40 {
		testenv.Put(t, e.Src, fmt.Sprintf("in/f%02d", i), []byte{byte(i)}, backends.PutOptions{})
	}
	e.sync(t, engine.Options{})
	gets := &countingGets{Bucket: e.Job.Dest}
	e.Job.Dest = gets
	other, _ := age.GenerateX25519Identity()
	wrong := CatalogOptions{Identities: []age.Identity{other}, Concurrency: 4}

	var errs []error
	for rep, err := range Catalog(context.Background(), e.Job, wrong) {
		if err == nil || rep.DestKey != "" {
			t.Errorf("wrong identity: got %q, %v; want only the error that ends the listing", rep.DestKey, err)
		}
		errs = append(errs, err)
	}
	if len(errs) != 1 || !IsWrongIdentity(errs[0]) || !strings.HasPrefix(errs[0].Error(), "job t: the identity does not match the replica's recipients: ") {
		t.Errorf("wrong identity: %v, want one error", errs)
	}
	// The reads queued in order behind the first one may have started.
	if n := gets.n.Load(); n > 2*int64(wrong.Concurrency) {
		t.Errorf("wrong identity: %d GETs of 40 replicas, want only the reads in flight", n)
	}
	if _, err := Verify(context.Background(), e.Job, VerifyOptions{Identities: wrong.Identities}); !IsWrongIdentity(err) {
		t.Errorf("verify with a wrong identity: %v", err)
	}
	s, err := Restore(context.Background(), e.Job, mustDirTarget(t), RestoreOptions{Catalog: wrong})
	if !IsWrongIdentity(err) || s.Failed != 0 || strings.Count(err.Error(), "the identity does not match") != 1 {
		t.Errorf("restore with a wrong identity: %+v, %v", s, err)
	}

	// A corrupt replica fails alone.
	bad := testenv.Keys(t, e.Dst, "out/")[7]
	testenv.Put(t, e.Dst, bad, []byte("not an age file"), backends.PutOptions{})
	n, failed := 0, 0
	for rep, err := range Catalog(context.Background(), e.Job, CatalogOptions{Identities: []age.Identity{id}, Concurrency: 4}) {
		switch {
		case err != nil && rep.DestKey == bad && !IsWrongIdentity(err):
			failed++
		case err != nil:
			t.Errorf("%s: %v", rep.DestKey, err)
		default:
			n++
		}
	}
	if n != 39 || failed != 1 {
		t.Errorf("corrupt replica: %d listed, %d failed; want 39 and 1", n, failed)
	}
}

// TestRestoreToMissingBucket: a target bucket that does not exist, or that
// refuses the credentials, stops the restore before any replica is read,
// with one error naming it.
func TestRestoreToMissingBucket(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, true)
	for i := range 5 {
		testenv.Put(t, e.Src, fmt.Sprintf("in/f%d", i), []byte{byte(i)}, backends.PutOptions{})
	}
	e.sync(t, engine.Options{})
	gets := &countingGets{Bucket: e.Job.Dest}
	e.Job.Dest = gets
	missing := backends.StatusError("list multipart uploads", "", 404, "NoSuchBucket", "")
	target := &BucketTarget{Bucket: testenv.RefusingUploads{Bucket: e.Src, Err: missing}, PartSize: ps}
	for _, dry := range []bool{false, true} {
		s, err := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{id}}, DryRun: dry})
		if !errors.Is(err, backends.ErrNoSuchBucket) || !strings.Contains(err.Error(), "the bucket does not exist") || !strings.Contains(err.Error(), e.Src.Name()) || s.Error == "" || s.DryRun != dry || s.Copied+s.Failed != 0 {
			t.Errorf("dry run %v: %+v, %v; want one error naming the bucket", dry, s, err)
		}
	}
	// Refused credentials stop it too; a target that only refuses the
	// listing of uploads is written to.
	denied := &backends.HTTPError{Status: 403, Code: "SignatureDoesNotMatch"}
	target.Bucket = testenv.RefusingUploads{Bucket: e.Src, Err: denied}
	if _, err := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{id}}}); !errors.Is(err, denied) {
		t.Errorf("restore with refused credentials: %v", err)
	}
	if n := gets.n.Load(); n != 0 {
		t.Errorf("%d GETs of replicas for a target that cannot take them", n)
	}
	target.Bucket = testenv.RefusingUploads{Bucket: e.Src, Err: &backends.HTTPError{Status: 403, Code: "AccessDenied"}}
	target.Prefix = "restored/"
	if s, err := Restore(context.Background(), e.Job, target, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{id}}}); err != nil || s.Copied != 5 {
		t.Errorf("restore to a bucket refusing ListMultipartUploads: %+v, %v", s, err)
	}
}

func mustDirTarget(t *testing.T) *DirTarget {
	t.Helper()
	d, err := NewDirTarget(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
