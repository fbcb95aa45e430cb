package fs

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/backendtest"
)

func newBucket(t *testing.T) *Bucket {
	t.Helper()
	b, err := New(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backends.Bucket { return newBucket(t) }, backendtest.Caps{})
}

func TestRejectsEscapingKeys(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	for _, key := range []string{
		"", "/etc/passwd", "../outside", "a/../../outside", "a/./b", "a//b", "a/", ".",
		"nul\x00byte", ".voyageur-fs/meta/x", strings.Repeat("k", 1025),
	} {
		_, err := b.Put(ctx, key, strings.NewReader("x"), 1, backends.PutOptions{})
		if err == nil || !strings.Contains(err.Error(), "invalid key") || !strings.Contains(err.Error(), "put ") {
			t.Errorf("put %q: %v, want an invalid key error", key, err)
		}
		if _, err := b.Stat(ctx, key, ""); err == nil {
			t.Errorf("stat %q succeeded", key)
		}
		if err := b.Delete(ctx, key, ""); err == nil {
			t.Errorf("delete %q succeeded", key)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(b.dir), "outside")); err == nil {
		t.Error("a file was written outside the root")
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	b := newBucket(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(b.dir, "link")); err != nil {
		t.Skip(err)
	}
	if _, err := b.Put(context.Background(), "link/x", strings.NewReader("x"), 1, backends.PutOptions{}); err == nil {
		t.Error("put through a symlink leaving the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Error("a file was written outside the root through a symlink")
	}
	if objs := listAll(t, b, ""); len(objs) != 0 {
		t.Errorf("list shows %v, want symlinks skipped", objs)
	}
}

func listAll(t *testing.T, b *Bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for oi, err := range b.List(context.Background(), backends.ListOptions{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

func TestHiddenDirInvisible(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "k", strings.NewReader("v"), 1, backends.PutOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	id, err := b.CreateMultipart(ctx, "m", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UploadPart(ctx, "m", id, 1, strings.NewReader("part"), 4, backends.PartOptions{}); err != nil {
		t.Fatal(err)
	}
	// A stray temp file, as a crash would leave.
	if err := os.WriteFile(filepath.Join(b.dir, tmpDir, "leftover"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", ".", ".voyageur-fs", ".voyageur-fs/"} {
		got := listAll(t, b, prefix)
		want := []string(nil)
		if prefix == "" {
			want = []string{"k"}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("list prefix %q: %q, want %q", prefix, got, want)
		}
	}
}

func TestForeignFilesAndStaleSidecar(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "doc.txt", strings.NewReader("old"), 3, backends.PutOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	// Replaced behind the bucket's back: the sidecar no longer applies.
	if err := os.WriteFile(filepath.Join(b.dir, "doc.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(b.dir, "dropped"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "dropped", "in.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"doc.txt": "changed", "dropped/in.txt": "hello"} {
		oi, err := b.Stat(ctx, key, "")
		if err != nil {
			t.Fatal(err)
		}
		if oi.ETag != md5Hex(want) || oi.ContentType != defaultContentType || oi.Size != int64(len(want)) {
			t.Errorf("stat %q: %+v, want the bytes' MD5 and the default content type", key, oi)
		}
	}
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestAtomicWrites(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "obj", strings.NewReader("original"), 8, backends.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A body that ends early stores nothing and leaves the old object.
	_, err := b.Put(ctx, "obj", strings.NewReader("short"), 100, backends.PutOptions{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("put of a short body: %v, want io.ErrUnexpectedEOF", err)
	}
	if got := readKey(t, b, "obj"); got != "original" {
		t.Errorf("after a failed put: %q, want original", got)
	}
	entries, err := os.ReadDir(filepath.Join(b.dir, tmpDir))
	if err != nil || len(entries) != 0 {
		t.Errorf("temp dir after a failed put: %v %v, want empty", entries, err)
	}

	// Readers racing writers only ever see a whole object.
	big := bytes.Repeat([]byte("A"), 1<<20)
	other := bytes.Repeat([]byte("B"), 1<<20)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := big
			if i%2 == 1 {
				data = other
			}
			if _, err := b.Put(ctx, "race", bytes.NewReader(data), int64(len(data)), backends.PutOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		rc, _, err := b.Get(ctx, "race", backends.GetOptions{})
		if backends.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, big) && !bytes.Equal(got, other) {
			t.Fatalf("read a mixed or partial object of %d bytes", len(got))
		}
	}
	close(stop)
	wg.Wait()
}

func readKey(t *testing.T, b *Bucket, key string) string {
	t.Helper()
	rc, _, err := b.Get(context.Background(), key, backends.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestVersionIDs(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "k", strings.NewReader("v"), 1, backends.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "k", "null"); err != nil {
		t.Errorf("stat of the null version: %v", err)
	}
	_, err := b.Stat(ctx, "k", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
	if !backends.IsNotExist(err) || !strings.HasPrefix(err.Error(), "stat k: ") {
		t.Errorf("stat of a version: %v, want a not-exist error starting with %q", err, "stat k: ")
	}
	if err := b.Delete(ctx, "k", "some-version"); err != nil {
		t.Errorf("delete of a version: %v", err)
	}
	if got := readKey(t, b, "k"); got != "v" {
		t.Errorf("after deleting another version: %q", got)
	}
}

func TestKeyDirectoryConflict(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "a/b", strings.NewReader("x"), 1, backends.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "a", strings.NewReader("x"), 1, backends.PutOptions{}); err == nil {
		t.Error(`put "a" over the directory of "a/b" succeeded`)
	} else if !strings.HasPrefix(err.Error(), "put a: ") {
		t.Errorf("error %q does not start with the operation and key", err)
	}
	if got := listAll(t, b, ""); strings.Join(got, ",") != "a/b" {
		t.Errorf("list: %q, want [a/b]", got)
	}
}
