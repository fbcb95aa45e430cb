package recovery

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// copyObject copies one object within b, as `aws s3api copy-object` does.
func copyObject(t *testing.T, b backends.Bucket, from, to string) {
	t.Helper()
	data, info := testenv.Get(t, b, from)
	testenv.Put(t, b, to, data, backends.PutOptions{ContentType: info.ContentType, Metadata: info.Metadata})
}

// restoreTo restores e's job into a new directory.
func restoreTo(t *testing.T, e *env, opts RestoreOptions) (string, replicator.Summary, error) {
	t.Helper()
	dir := t.TempDir()
	target, err := NewDirTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	s, err := Restore(context.Background(), e.Job, target, opts)
	return dir, s, err
}

// TestRestoreRefusesMisnamedReplica: with plain names, a replica whose name
// is not the one its META key maps to (a copy of an old replica under
// another name, or one replica copied over another) is refused, without any
// name secret; the key it claims is restored once, from its own replica.
func TestRestoreRefusesMisnamedReplica(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	oldC, newC := testenv.RandBytes(3*ps, 1), testenv.RandBytes(3*ps, 2)
	testenv.Put(t, e.Src, "in/c.bin", oldC, backends.PutOptions{})
	testenv.Put(t, e.Src, "in/a.txt", []byte("a"), backends.PutOptions{})
	testenv.Put(t, e.Src, "in/b.txt", []byte("b"), backends.PutOptions{})
	e.sync(t, engine.Options{})
	copyObject(t, e.Dst, "out/c.bin", "out/zz-copy-of-old-c.bin")
	copyObject(t, e.Dst, "out/b.txt", "out/a.txt")
	testenv.Put(t, e.Src, "in/c.bin", newC, backends.PutOptions{})
	e.sync(t, engine.Options{})

	ids := []age.Identity{id}
	for range 3 {
		dir, s, err := restoreTo(t, e, RestoreOptions{Catalog: CatalogOptions{Identities: ids}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "in/c.bin")); !bytes.Equal(got, newC) {
			t.Fatalf("c.bin restored as %d bytes matching neither version's current content", len(got))
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "in/b.txt")); string(got) != "b" {
			t.Errorf("b.txt = %q", got)
		}
		for _, gone := range []string{"in/a.txt", "in/zz-copy-of-old-c.bin"} {
			if _, err := os.Stat(filepath.Join(dir, gone)); err == nil {
				t.Errorf("%s restored from a misnamed replica", gone)
			}
		}
		if s.Failed != 2 || s.Copied != 2 {
			t.Fatalf("summary %+v; want 2 copied, the 2 misnamed replicas failed", s)
		}
		for _, f := range s.Failures {
			if !strings.Contains(f.Error, "does not match the key in its META") {
				t.Errorf("failure %+v does not say why", f)
			}
		}
	}
}

// TestRestoreConflictWithoutNameSecret: with hashed names and no name
// secret, two replicas claiming one key are a conflict: neither is
// restored, the key is listed as failed naming both, and the restore says
// that names are not being checked.
func TestRestoreConflictWithoutNameSecret(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, true)
	testenv.Put(t, e.Src, "in/c.bin", testenv.RandBytes(3*ps, 1), backends.PutOptions{})
	testenv.Put(t, e.Src, "in/d.bin", []byte("d"), backends.PutOptions{})
	e.sync(t, engine.Options{})
	copyObject(t, e.Dst, e.Job.DestKey("in/c.bin"), "out/zzzzzzzzzzzzzzzz")
	e.Job.Encryption.NameSecret = nil

	var logs bytes.Buffer
	dir, s, err := restoreTo(t, e, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{id}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "in/c.bin")); err == nil {
		t.Error("a key two replicas claim was restored")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "in/d.bin")); string(got) != "d" {
		t.Errorf("d.bin = %q", got)
	}
	if s.Failed != 1 || s.Copied != 1 || len(s.Failures) != 1 || s.Failures[0].Key != "in/c.bin" ||
		!strings.Contains(s.Failures[0].Error, "out/zzzzzzzzzzzzzzzz") || !strings.Contains(s.Failures[0].Error, "conflict") {
		t.Errorf("summary %+v; want in/c.bin failed as a conflict naming both replicas", s)
	}
	if !strings.Contains(logs.String(), "names are not being checked") {
		t.Errorf("no warning that names are not checked in:\n%s", logs.String())
	}
}

// TestFailedRestoreLeavesNothing: a replica that fails verification leaves
// neither a file at the final path nor a temporary one.
func TestFailedRestoreLeavesNothing(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	testenv.Put(t, e.Src, "in/x/c.bin", testenv.RandBytes(3*ps, 1), backends.PutOptions{})
	e.sync(t, engine.Options{})
	data, _ := testenv.Get(t, e.Dst, "out/x/c.bin")
	data[len(data)/2] ^= 1
	testenv.Put(t, e.Dst, "out/x/c.bin", data, backends.PutOptions{})
	dir, s, err := restoreTo(t, e, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{id}}})
	if err != nil || s.Failed != 1 {
		t.Fatalf("%+v %v", s, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "in/x"))
	for _, ent := range entries {
		t.Errorf("left behind: %s", ent.Name())
	}
}
