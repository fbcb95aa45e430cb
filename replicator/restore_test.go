package replicator

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
)

func TestCatalogAndRestore(t *testing.T) {
	e := newEnv(t)
	id := encrypted(t, e, true)
	want := map[string][]byte{}
	for i := range 40 {
		key := fmt.Sprintf("in/d%d/f%02d.csv", i%3, i)
		want[key] = bytes.Repeat([]byte{byte(i)}, 100+i)
		put(t, e.src, key, want[key], backends.PutOptions{ContentType: "text/csv"})
	}
	e.sync(t, Options{})
	ids := []age.Identity{id}

	n := 0
	for rep, err := range Catalog(context.Background(), e.job, CatalogOptions{Identities: ids, Prefix: "in/d1/", Concurrency: 4}) {
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
	for range Catalog(context.Background(), e.job, CatalogOptions{Identities: ids, Concurrency: 2}) {
		break
	}

	dir := t.TempDir()
	target, err := NewDirTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	s, err := Restore(context.Background(), e.job, target, RestoreOptions{Catalog: CatalogOptions{Identities: ids}})
	if err != nil || s.Copied != 40 || s.Failed != 0 {
		t.Fatalf("restore: %+v %v", s, err)
	}
	for key, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %v", key, err)
		}
	}
	if s, _ := Restore(context.Background(), e.job, target, RestoreOptions{Catalog: CatalogOptions{Identities: ids}}); s.Skipped != 40 {
		t.Errorf("re-run: %+v", s)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := Restore(context.Background(), e.job, target, RestoreOptions{Catalog: CatalogOptions{Identities: []age.Identity{other}}}); err == nil {
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
