package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"
)

// floorEnv, set to a JSON floorSpec, makes the test binary the floor
// client of workload S (see TestMain): one listing, then per object exactly
// one GET at the source and one PUT at the destination, 16 objects at once,
// the bytes as they are. No journal, no encryption: what is left of
// voyageur's time beyond this is its own.
const floorEnv = "VOYAGEUR_BENCH_FLOOR"

// floorConcurrency is the floor client's objects in flight, voyageur's
// default transfer.concurrency.
const floorConcurrency = 16

// floorSpec is where the floor client reads and writes.
type floorSpec struct {
	SrcURL, SrcAccess, SrcSecret, SrcBucket, Prefix string
	DstURL, DstAccess, DstSecret, DstBucket         string
}

func floorClient(rawURL, access, secret string) (*minio.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return minio.New(u.Host, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Secure: u.Scheme == "https", Region: "us-east-1",
	})
}

// floorCopy is the floor client's whole run.
func floorCopy(specJSON string) error {
	var s floorSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return fmt.Errorf("floor spec: %w", err)
	}
	src, err := floorClient(s.SrcURL, s.SrcAccess, s.SrcSecret)
	if err != nil {
		return err
	}
	dst, err := floorClient(s.DstURL, s.DstAccess, s.DstSecret)
	if err != nil {
		return err
	}
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(floorConcurrency)
	n := 0
	for obj := range src.ListObjects(ctx, s.SrcBucket, minio.ListObjectsOptions{Prefix: s.Prefix, Recursive: true}) {
		if obj.Err != nil {
			return obj.Err
		}
		n++
		g.Go(func() error {
			rc, err := src.GetObject(gctx, s.SrcBucket, obj.Key, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			defer rc.Close()
			body, err := io.ReadAll(rc)
			if err != nil {
				return fmt.Errorf("get %s: %w", obj.Key, err)
			}
			_, err = dst.PutObject(gctx, s.DstBucket, obj.Key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
				ContentType: "application/octet-stream", DisableContentSha256: true,
			})
			if err != nil {
				return fmt.Errorf("put %s: %w", obj.Key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Println(n)
	return nil
}

// floorRun runs the floor client on workload w into dst, through the
// launcher like the tools, and checks it copied every object.
func (r *rig) floorRun(w workload, dst endpoint) sample {
	r.tb.Helper()
	spec, err := json.Marshal(floorSpec{
		SrcURL: r.src.URL, SrcAccess: r.src.AccessKey, SrcSecret: r.src.SecretKey, SrcBucket: r.srcBucket, Prefix: w.prefix + "/",
		DstURL: dst.url, DstAccess: r.dst.AccessKey, DstSecret: r.dst.SecretKey, DstBucket: dst.bucket,
	})
	if err != nil {
		r.tb.Fatal(err)
	}
	s := r.runMeasured(append(baseEnv(), floorEnv+"="+string(spec)), os.Args[0])
	var copied int64
	if _, err := fmt.Sscan(string(s.out), &copied); err != nil || copied != w.files {
		r.tb.Fatalf("floor client copied %q objects, want %d (%v)", s.out, w.files, err)
	}
	return s
}

// floor runs the floor client n times on w, each into a fresh bucket.
func (r *rig) floor(w workload, n int) []sample {
	var out []sample
	for range n {
		dst := endpoint{url: r.dst.URL, bucket: r.dst.CreateBucket(r.tb, false)}
		out = append(out, r.floorRun(w, dst))
		r.removeBucket(dst.bucket)
	}
	return out
}
