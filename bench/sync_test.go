package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/backends"
	vminio "github.com/voyageur-ca/voyageur/backends/minio"
	"github.com/voyageur-ca/voyageur/backends/retry"
	"github.com/voyageur-ca/voyageur/backends/s3"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// The BenchmarkSync* benchmarks run engine.Sync in this process, with
// the backends and retry layer the binary builds, between two MinIO
// servers, so that -cpuprofile and -memprofile see the copy engine:
//
//	go test -run '^$' -bench SyncSmall -benchtime 3x -cpuprofile cpu.out ./bench/
//
// Each iteration copies into a fresh bucket with a fresh journal.

// BenchmarkSyncSmall copies workload S: 2,000 × 16 KiB, encrypted.
func BenchmarkSyncSmall(b *testing.B) { benchSync(b, 2000, 16<<10, true) }

// BenchmarkSyncLarge copies workload L: 4 × 128 MiB, encrypted.
func BenchmarkSyncLarge(b *testing.B) { benchSync(b, 4, 128<<20, true) }

// BenchmarkSyncLargePlain copies workload L without encryption.
func BenchmarkSyncLargePlain(b *testing.B) { benchSync(b, 4, 128<<20, false) }

// BenchmarkSyncLedger copies the 256 MiB CSV ledger of workload C,
// encrypted, without the link limit: compression's share of the CPU.
func BenchmarkSyncLedger(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ledger.csv")
	writeLedger(b, path, 256<<20)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	benchSyncData(b, 1, len(data), true, func([]byte) {}, data)
}

func benchSync(b *testing.B, n, size int, encrypted bool) {
	r := rand.NewChaCha8([32]byte{3})
	benchSyncData(b, n, size, encrypted, func(p []byte) { r.Read(p) }, make([]byte, size))
}

// benchSyncData seeds n objects of size bytes, each filled by fill.
func benchSyncData(b *testing.B, n, size int, encrypted bool, fill func([]byte), data []byte) {
	src, dst := minioserver.Start(b), minioserver.Start(b)
	srcBucket := src.CreateBucket(b, false)
	seed := src.Client(b)
	for i := range n {
		fill(data)
		if _, err := seed.PutObject(context.Background(), srcBucket, fmt.Sprintf("in/%05d", i), bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	source, err := s3.New(ctx, s3.Config{Bucket: srcBucket, URL: src.URL, PathStyle: true, AccessKey: src.AccessKey, SecretKey: src.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	var enc *replicator.Encryption
	if encrypted {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		enc = &replicator.Encryption{
			Options:     crypto.Options{Recipients: []age.Recipient{id.Recipient()}, Compression: crypto.Compression{Zstd: true}},
			HashedNames: true, NameSecret: nameSecret,
		}
	}
	b.SetBytes(int64(n * size))
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		bucket := dst.CreateBucket(b, false)
		dest, err := vminio.New(vminio.Config{Bucket: bucket, Region: "us-east-1", URL: dst.URL, AccessKey: dst.AccessKey, SecretKey: dst.SecretKey})
		if err != nil {
			b.Fatal(err)
		}
		j, err := journal.Open(filepath.Join(b.TempDir(), fmt.Sprintf("journal-%d.db", i)), 0)
		if err != nil {
			b.Fatal(err)
		}
		job := replicator.Job{
			Name: "bench", Source: wrap(source), SourcePrefix: "in/", Dest: wrap(dest), Encryption: enc,
		}
		b.StartTimer()
		sum, err := engine.Sync(ctx, j, job, engine.Options{})
		b.StopTimer()
		j.Close()
		if err != nil || sum.Copied != int64(n) {
			b.Fatalf("sync: %+v, %v", sum, err)
		}
		b.StartTimer()
	}
}

// wrap adds the retry layer, as the binary does.
func wrap(b backends.Bucket) backends.Bucket { return retry.Wrap(b, retry.Policy{}) }
