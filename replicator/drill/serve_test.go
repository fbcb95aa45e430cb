package drill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// TestServeSample reads a replicated job through the in-process serve
// path: matching digests count as served, a digest the served bytes do
// not have is a failure naming the failover path, and a job serve cannot
// serve is noted, not failed.
func TestServeSample(t *testing.T) {
	dir := t.TempDir()
	src, err := fs.New(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := fs.New(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	job := replicator.Job{Name: "ledgers", Source: src, SourcePrefix: "in/", Dest: dst,
		Transfer:   replicator.Transfer{PartSize: replicator.MinPartSize, Concurrency: 2, Memory: 8 * replicator.MinPartSize},
		Encryption: &replicator.Encryption{Options: crypto.Options{Recipients: []age.Recipient{id.Recipient()}, Compression: crypto.Compression{Zstd: true}}}}
	ctx := context.Background()
	data := map[string][]byte{}
	for i, n := range []int{0, 1, 3*replicator.MinPartSize + 7} {
		key := fmt.Sprintf("in/f%d", i)
		data[key] = bytes.Repeat([]byte{byte(i + 1)}, n)
		if _, err := src.Put(ctx, key, bytes.NewReader(data[key]), int64(n), backends.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	j, err := journal.Open(filepath.Join(dir, "journal.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := engine.Sync(ctx, j, job, engine.Options{}); err != nil || s.Failed != 0 {
		t.Fatalf("sync: %+v %v", s, err)
	}
	j.Close()
	var sample []recovery.Replica
	for rep, err := range recovery.Catalog(ctx, job, recovery.CatalogOptions{Identities: []age.Identity{id}}) {
		if err != nil {
			t.Fatal(err)
		}
		sample = append(sample, rep)
	}
	sums := map[string][]byte{}
	for k, b := range data {
		s := sha256.Sum256(b)
		sums[k] = s[:]
	}
	opts := Options{Identities: []age.Identity{id}}

	var res Result
	serveSample(ctx, job, sample, sums, opts, &res)
	if res.ServeVerified != len(data) || len(res.Failed) != 0 || res.ServeNote != "" {
		t.Fatalf("healthy job: %d of %d served, failed %v, note %q", res.ServeVerified, len(data), res.Failed, res.ServeNote)
	}

	sums["in/f2"] = make([]byte, sha256.Size)
	res = Result{}
	serveSample(ctx, job, sample, sums, opts, &res)
	if res.ServeVerified != len(data)-1 || len(res.Failed) != 1 || res.Failed[0].Key != "in/f2" || !strings.HasPrefix(res.Failed[0].Reason, "through voyageur serve: ") {
		t.Fatalf("a digest the served bytes lack: %d served, failed %+v", res.ServeVerified, res.Failed)
	}

	job.Name = "Ledgers_2026"
	res = Result{}
	serveSample(ctx, job, sample, sums, opts, &res)
	if res.ServeVerified != 0 || len(res.Failed) != 0 || len(res.Problems) != 0 || !strings.Contains(res.ServeNote, "not a valid S3 bucket name") {
		t.Fatalf("a job serve cannot serve: %d served, failed %v, problems %v, note %q", res.ServeVerified, res.Failed, res.Problems, res.ServeNote)
	}
}
