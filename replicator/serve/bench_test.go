package serve

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// BenchmarkServeGet streams one 256 MiB random object, replicated
// encrypted (age + zstd, 8 MiB parts) into an fs destination, through the
// handler in-process: serve's own CPU per byte, without MinIO beside it
// (bench/serve_test.go times the real thing). Profile it with
// -cpuprofile.
func BenchmarkServeGet(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	src, err := fs.New(filepath.Join(dir, "src"))
	if err != nil {
		b.Fatal(err)
	}
	dst, err := fs.New(filepath.Join(dir, "dst"))
	if err != nil {
		b.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	job := replicator.Job{Name: "ledgers", Source: src, SourcePrefix: "in/", Dest: dst, DestPrefix: "out/",
		Transfer:   replicator.Transfer{PartSize: 8 << 20, Concurrency: 4, Memory: 64 << 20},
		Encryption: &replicator.Encryption{Options: crypto.Options{Recipients: []age.Recipient{id.Recipient()}, Compression: crypto.Compression{Zstd: true}}}}
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	ctx := context.Background()
	if _, err := src.Put(ctx, "in/big.bin", bytes.NewReader(data), size, backends.PutOptions{}); err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	if s, err := engine.Sync(ctx, j, job, engine.Options{}); err != nil || s.Failed != 0 {
		b.Fatalf("sync: %+v %v", s, err)
	}
	j.Close()
	f := &fixture{dir: dir, src: src, dst: dst, job: job, id: id}
	s, hs := f.start(b)
	if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
		b.Fatal(err)
	}
	c := client(hs.URL, "serve-access", "serve-secret-key")
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin")})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, o.Body)
		o.Body.Close()
		if err != nil || n != size {
			b.Fatalf("GET: %d bytes, %v", n, err)
		}
	}
}
