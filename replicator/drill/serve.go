package drill

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
	"github.com/voyageur-ca/voyageur/replicator/serve"
)

// serveSample reads the restored objects again through the failover path:
// the job (its listing narrowed to the sample) served in-process by
// `voyageur serve`'s handler on a loopback port, under a key pair made for
// this drill, and read with an S3 client (SigV4, one streaming GET each).
// Each body's SHA-256 must equal the restore's, which was checked against
// the replica's digest (and the source's bytes where reachable). A job the
// serve path cannot serve is noted, not failed: serve refuses it too.
func serveSample(ctx context.Context, job replicator.Job, sample []recovery.Replica, sums map[string][]byte, opts Options, res *Result) {
	access, secret := randomHex(10), randomHex(20)
	srv, err := serve.New([]replicator.Job{job}, serve.Options{Identities: opts.Identities, AccessKey: access, SecretKey: secret, Concurrency: job.Transfer.Concurrency})
	if err != nil {
		res.ServeNote = "not checked: voyageur serve cannot serve this job: " + err.Error()
		return
	}
	defer srv.Close()
	t0 := time.Now()
	if err := srv.Load(ctx); err != nil {
		res.ServeNote = "not checked: " + err.Error()
		res.Problems = append(res.Problems, "the failover path (voyageur serve) could not load the catalog: "+err.Error())
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		res.ServeNote = "not checked: " + err.Error()
		res.Problems = append(res.Problems, "the failover path (voyageur serve) could not listen on loopback: "+err.Error())
		return
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: time.Minute}
	go hs.Serve(ln)
	defer hs.Close()
	client, err := minio.New(ln.Addr().String(), &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		res.ServeNote = "not checked: " + err.Error()
		return
	}
	var bytes int64
	for _, rep := range sample {
		want, ok := sums[rep.Meta.Key]
		if !ok {
			continue // did not restore or verify: already failed
		}
		n, err := getSHA256(ctx, client, job.Name, strings.TrimPrefix(rep.Meta.Key, job.SourcePrefix), want, rep.Meta.Size)
		if err != nil {
			res.Failed = append(res.Failed, Failure{Key: rep.Meta.Key, Reason: "through voyageur serve: " + err.Error()})
			continue
		}
		res.ServeVerified++
		bytes += n
	}
	res.ServeSeconds = round(time.Since(t0).Seconds())
	if res.ServeSeconds > 0 {
		res.ServeBytesPerSecond = round(float64(bytes) / res.ServeSeconds)
	}
}

// getSHA256 GETs one object and checks its size and SHA-256.
func getSHA256(ctx context.Context, c *minio.Client, bucket, key string, want []byte, size int64) (int64, error) {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("get: %w", err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		return n, fmt.Errorf("get: %w", err)
	}
	if n != size {
		return n, fmt.Errorf("%d bytes served, the object has %d", n, size)
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return n, errors.New("the bytes served differ from the restored ones (SHA-256)")
	}
	return n, nil
}

// randomHex is a fresh credential of n random bytes, in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
