// Package testenv sets up what the tests of the replication packages
// share: a job from one fs-backed bucket to another with its journal, and
// helpers to put, get and list objects.
package testenv

import (
	"bytes"
	"context"
	"io"
	"iter"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
)

// PS is the part size of the job New makes: the smallest S3 allows, so
// that small test objects have several parts.
const PS = replicator.MinPartSize

// Env is a job from Src (prefix "in/") to Dst (prefix "out/") with its
// journal J.
type Env struct {
	Src, Dst backends.Bucket
	J        *journal.Journal
	Job      replicator.Job
}

// New makes an Env in a temporary directory, removed with the test.
func New(t *testing.T) *Env {
	t.Helper()
	dir := t.TempDir()
	src, err := fs.New(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := fs.New(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &Env{Src: src, Dst: dst, J: j, Job: replicator.Job{
		Name: "t", Source: src, SourcePrefix: "in/", Dest: dst, DestPrefix: "out/",
		Transfer: replicator.Transfer{PartSize: PS, Concurrency: 4, Memory: 4 * PS},
	}}
}

// Encrypt makes e's job encrypt (zstd) to a new X25519 identity, which it
// returns; hashed also hides names.
func Encrypt(t *testing.T, e *Env, hashed bool) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e.Job.Transfer.Memory = 8 * PS
	e.Job.Encryption = &replicator.Encryption{Options: crypto.Options{
		Recipients:  []age.Recipient{id.Recipient()},
		Compression: crypto.Compression{Zstd: true},
	}}
	if hashed {
		e.Job.Encryption.HashedNames, e.Job.Encryption.NameSecret = true, bytes.Repeat([]byte{7}, 32)
	}
	return id
}

// Decrypt reads a replica back through the age library and checks its
// SHA-256 and META.
func Decrypt(t *testing.T, b backends.Bucket, key string, id age.Identity) ([]byte, crypto.Meta) {
	t.Helper()
	data, _ := Get(t, b, key)
	var out bytes.Buffer
	meta, _, err := crypto.Decrypt(bytes.NewReader(data), &out, id)
	if err != nil {
		t.Fatalf("decrypt %s: %v", key, err)
	}
	return out.Bytes(), meta
}

// RandBytes returns n bytes that depend only on seed.
func RandBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Put stores data at key in b.
func Put(t *testing.T, b backends.Bucket, key string, data []byte, opts backends.PutOptions) {
	t.Helper()
	if _, err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatal(err)
	}
}

// Get reads the object at key in b.
func Get(t *testing.T, b backends.Bucket, key string) ([]byte, backends.ObjectInfo) {
	t.Helper()
	rc, info, err := b.Get(context.Background(), key, backends.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data, info
}

// Keys lists the keys under prefix in b.
func Keys(t *testing.T, b backends.Bucket, prefix string) []string {
	t.Helper()
	var out []string
	for o, err := range b.List(context.Background(), backends.ListOptions{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Key)
	}
	return out
}

// LogBuffer is a bytes.Buffer safe for concurrent writers (log handlers).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RefusingUploads answers ListMultipartUploads, the first request sync and
// restore send to a destination, with Err.
type RefusingUploads struct {
	backends.Bucket
	Err error
}

// ListMultipartUploads yields Err.
func (r RefusingUploads) ListMultipartUploads(context.Context, string) iter.Seq2[backends.Upload, error] {
	return func(yield func(backends.Upload, error) bool) { yield(backends.Upload{}, r.Err) }
}
