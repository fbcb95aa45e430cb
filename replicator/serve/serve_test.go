package serve

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

const partSize = replicator.MinPartSize

type fixture struct {
	dir      string
	src, dst backends.Bucket
	job      replicator.Job
	id       *age.X25519Identity
	data     map[string][]byte // by key relative to the source prefix
}

// newFixture replicates objects with engine.Sync between two fs
// buckets: encrypted (hashed names) or plain.
func newFixture(t *testing.T, encrypted bool) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), data: map[string][]byte{}}
	var err error
	if f.src, err = fs.New(filepath.Join(f.dir, "src")); err != nil {
		t.Fatal(err)
	}
	if f.dst, err = fs.New(filepath.Join(f.dir, "dst")); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(f.dir, "journal.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	f.job = replicator.Job{Name: "ledgers", Source: f.src, SourcePrefix: "in/", Dest: f.dst, DestPrefix: "out/",
		Transfer: replicator.Transfer{PartSize: partSize, Concurrency: 4, Memory: 8 * partSize}}
	if encrypted {
		if f.id, err = age.GenerateX25519Identity(); err != nil {
			t.Fatal(err)
		}
		f.job.Encryption = &replicator.Encryption{
			Options:     crypto.Options{Recipients: []age.Recipient{f.id.Recipient()}, Compression: crypto.Compression{Zstd: true}},
			HashedNames: true, NameSecret: bytes.Repeat([]byte{7}, 32),
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	add := func(key string, n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.data[key] = b
		if _, err := f.src.Put(context.Background(), "in/"+key, bytes.NewReader(b), int64(n), backends.PutOptions{ContentType: "text/csv", Metadata: map[string]string{"owner": "finance"}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 25 {
		add(fmt.Sprintf("d%d/f%02d.csv", i%3, i), 100+i)
	}
	add("empty", 0)
	add("one byte", 1)
	add("big.bin", 3*partSize+100)
	s, err := engine.Sync(context.Background(), j, f.job, engine.Options{})
	if err != nil || s.Failed != 0 {
		t.Fatalf("sync: %+v %v", s, err)
	}
	return f
}

// start runs a Server over the fixture's job and returns an S3 client for
// it, authenticated with secret.
func (f *fixture) start(t testing.TB) (*Server, *httptest.Server) {
	t.Helper()
	opts := Options{AccessKey: "serve-access", SecretKey: "serve-secret-key", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if f.id != nil {
		opts.Identities = []age.Identity{f.id}
	}
	s, err := New([]replicator.Job{f.job}, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

func client(url, access, secret string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(url), Region: "us-east-1", UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func healthz(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestServe reads both kinds of replica through the S3 API with
// aws-sdk-go-v2: listings page by page, whole and ranged GETs checked
// against the source, HEAD metadata, conditions, refused writes, bad
// credentials, and health before and after the catalog loads.
func TestServe(t *testing.T) {
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			f := newFixture(t, encrypted)
			s, hs := f.start(t)
			ctx := context.Background()
			c := client(hs.URL, "serve-access", "serve-secret-key")
			if code := healthz(t, hs.URL); code != http.StatusServiceUnavailable {
				t.Fatalf("healthz before the catalog loaded: %d, want 503", code)
			}
			if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("ledgers")}); errCode(err) != "SlowDown" {
				t.Fatalf("listing before the catalog loaded: %v", err)
			}
			for _, b := range s.names {
				if err := s.load(ctx, s.buckets[b]); err != nil {
					t.Fatal(err)
				}
			}
			if code := healthz(t, hs.URL); code != http.StatusOK {
				t.Fatalf("healthz after load: %d", code)
			}

			// Paging, flat then with a delimiter.
			var got []string
			p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("ledgers"), MaxKeys: aws.Int32(4)})
			pages := 0
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, o := range out.Contents {
					got = append(got, *o.Key)
					if int64(len(f.data[*o.Key])) != *o.Size {
						t.Errorf("%s listed with size %d, want %d", *o.Key, *o.Size, len(f.data[*o.Key]))
					}
				}
			}
			if len(got) != len(f.data) || pages != (len(f.data)+3)/4 {
				t.Fatalf("listed %d keys in %d pages, want %d", len(got), pages, len(f.data))
			}
			var prefixes []string
			var marker *string
			for {
				out, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("ledgers"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(2), Marker: marker})
				if err != nil {
					t.Fatal(err)
				}
				for _, cp := range out.CommonPrefixes {
					prefixes = append(prefixes, *cp.Prefix)
				}
				for _, o := range out.Contents {
					prefixes = append(prefixes, *o.Key)
				}
				if !aws.ToBool(out.IsTruncated) {
					break
				}
				marker = out.NextMarker
			}
			slices.Sort(prefixes)
			if strings.Join(prefixes, ",") != "big.bin,d0/,d1/,d2/,empty,one byte" {
				t.Fatalf("delimited listing: %v", prefixes)
			}
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("ledgers"), Prefix: aws.String("d1/"), StartAfter: aws.String("d1/f04.csv")})
			if err != nil || len(out.Contents) != 6 || *out.Contents[0].Key != "d1/f07.csv" {
				t.Fatalf("prefix d1/ after d1/f04.csv: %v %d", err, len(out.Contents))
			}

			// Bytes, whole and ranged.
			for key, data := range f.data {
				o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String(key)})
				if err != nil {
					t.Fatalf("get %s: %v", key, err)
				}
				b, err := io.ReadAll(o.Body)
				o.Body.Close()
				if err != nil || !bytes.Equal(b, data) {
					t.Fatalf("get %s: %d bytes, %v", key, len(b), err)
				}
				if aws.ToString(o.ContentType) != "text/csv" || o.Metadata["owner"] != "finance" {
					t.Errorf("get %s: content type %q, metadata %v", key, aws.ToString(o.ContentType), o.Metadata)
				}
				if len(o.Metadata) != 1 {
					t.Errorf("get %s: metadata %v has more than the source's", key, o.Metadata)
				}
			}
			big := f.data["big.bin"]
			n := int64(len(big))
			before := s.metrics.fetchedBytes.Load()
			for _, r := range []struct {
				header   string
				from, to int64
			}{{"bytes=0-0", 0, 1}, {"bytes=5242879-6291455", partSize - 1, partSize + 1<<20}, {fmt.Sprintf("bytes=%d-", n-10), n - 10, n}, {"bytes=-100", n - 100, n}} {
				o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin"), Range: aws.String(r.header)})
				if err != nil {
					t.Fatalf("range %s: %v", r.header, err)
				}
				b, _ := io.ReadAll(o.Body)
				o.Body.Close()
				if !bytes.Equal(b, big[r.from:r.to]) {
					t.Fatalf("range %s: %d bytes differ", r.header, len(b))
				}
				if want := fmt.Sprintf("bytes %d-%d/%d", r.from, r.to-1, n); aws.ToString(o.ContentRange) != want {
					t.Errorf("range %s: Content-Range %q, want %q", r.header, aws.ToString(o.ContentRange), want)
				}
			}
			if encrypted {
				// Four ranged reads, the first of which opened the replica:
				// about one part each, never the object four times.
				if fetched := s.metrics.fetchedBytes.Load() - before; fetched > 4*2*partSize {
					t.Errorf("4 ranged reads fetched %d replica bytes", fetched)
				}
			}

			// HEAD, ETag and conditions.
			h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv")})
			if err != nil {
				t.Fatal(err)
			}
			srcInfo, err := f.src.Stat(ctx, "in/d0/f00.csv", "")
			if err != nil {
				t.Fatal(err)
			}
			// A plain replica does not record the source's time: its own is
			// served (as restore does); META has the source's.
			if encrypted && !aws.ToTime(h.LastModified).Equal(srcInfo.LastModified.Truncate(time.Second)) {
				t.Errorf("head: Last-Modified %v, the source's %v", aws.ToTime(h.LastModified), srcInfo.LastModified)
			}
			sum := md5.Sum(f.data["d0/f00.csv"])
			if etag := `"` + hex.EncodeToString(sum[:]) + `"`; aws.ToString(h.ETag) != etag || aws.ToInt64(h.ContentLength) != 100 {
				t.Errorf("head: ETag %s (want the source's %s), length %d", aws.ToString(h.ETag), etag, aws.ToInt64(h.ContentLength))
			}
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv"), IfNoneMatch: h.ETag}); !strings.Contains(fmt.Sprint(err), "304") {
				t.Errorf("If-None-Match the ETag: %v, want 304", err)
			}
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv"), IfMatch: aws.String(`"00000000000000000000000000000000"`)}); errCode(err) != "PreconditionFailed" {
				t.Errorf("If-Match another ETag: %v", err)
			}

			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv"), IfModifiedSince: aws.Time(h.LastModified.Add(time.Hour))}); !strings.Contains(fmt.Sprint(err), "304") {
				t.Errorf("If-Modified-Since after Last-Modified: %v, want 304", err)
			}
			if o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv"), IfModifiedSince: aws.Time(h.LastModified.Add(-time.Hour))}); err != nil {
				t.Errorf("If-Modified-Since before Last-Modified: %v", err)
			} else {
				o.Body.Close()
			}

			// Errors.
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("nope")}); errCode(err) != "NoSuchKey" {
				t.Errorf("unknown key: %v", err)
			}
			if _, err := client(hs.URL, "serve-access", "wrong").ListBuckets(ctx, &s3.ListBucketsInput{}); errCode(err) != "SignatureDoesNotMatch" {
				t.Errorf("wrong secret: %v", err)
			}
			if _, err := client(hs.URL, "other", "serve-secret-key").ListBuckets(ctx, &s3.ListBucketsInput{}); errCode(err) != "InvalidAccessKeyId" {
				t.Errorf("unknown access key: %v", err)
			}
			if resp, err := http.Get(hs.URL + "/ledgers/d0/f00.csv"); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("anonymous GET: %v %v", resp, err)
			}
			listing := destListing(t, f.dst)
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("new"), Body: strings.NewReader("x")}); errCode(err) != "AccessDenied" {
				t.Errorf("put: %v", err)
			}
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv")}); errCode(err) != "AccessDenied" {
				t.Errorf("delete: %v", err)
			}
			if after := destListing(t, f.dst); after != listing {
				t.Errorf("the destination changed:\n%s\n%s", listing, after)
			}
		})
	}
}

// destListing describes everything at the destination.
func destListing(t *testing.T, b backends.Bucket) string {
	var sb strings.Builder
	for o, err := range b.List(context.Background(), backends.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%s %d %s\n", o.Key, o.Size, o.ETag)
	}
	return sb.String()
}

// TestServeTampered flips one byte inside the large replica: its GET fails
// (cut before it completes) and is counted, the others still serve.
func TestServeTampered(t *testing.T) {
	f := newFixture(t, true)
	s, hs := f.start(t)
	ctx := context.Background()
	if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	e, _, err := s.buckets["ledgers"].cat.find("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, "dst", e.rep.DestKey)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c := client(hs.URL, "serve-access", "serve-secret-key")
	o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin")})
	if err == nil {
		b, rerr := io.ReadAll(o.Body)
		o.Body.Close()
		if rerr == nil {
			t.Fatalf("GET of a tampered replica gave %d bytes and no error", len(b))
		}
	}
	o, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(o.Body)
	o.Body.Close()
	if !bytes.Equal(b, f.data["d0/f00.csv"]) {
		t.Fatal("another object no longer serves")
	}
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`voyageur_serve_replica_failures_total\{voyageur_job="ledgers"\} [1-9]`).Match(m) {
		t.Errorf("metrics do not count the failure:\n%s", m)
	}
}

// TestServeReplacedReplica puts back, after the catalog was read, the
// replica of an older version of the same object, of the same size: a
// valid age file to the same recipient, whose TRAILER matches its own
// bytes. Its GET must fail, ranged or whole, not serve the old bytes.
func TestServeReplacedReplica(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	const key = "d0/f00.csv"
	s0, _ := f.start(t)
	if err := s0.load(ctx, s0.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	e, _, err := s0.buckets["ledgers"].cat.find(key)
	if err != nil {
		t.Fatal(err)
	}
	s0.Close()
	path := filepath.Join(f.dir, "dst", e.rep.DestKey)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newer := bytes.Clone(f.data[key])
	slices.Reverse(newer) // as incompressible as the first version
	// Written again until its replica has the old one's length (its
	// modification time, in META, may be written with fewer digits): only
	// META then tells the two versions apart.
	for try := 0; ; try++ {
		if _, err := f.src.Put(ctx, "in/"+key, bytes.NewReader(newer), int64(len(newer)), backends.PutOptions{ContentType: "text/csv", Metadata: map[string]string{"owner": "finance"}}); err != nil {
			t.Fatal(err)
		}
		j, err := journal.Open(filepath.Join(f.dir, "journal.db"), 0)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := engine.Sync(ctx, j, f.job, engine.Options{})
		j.Close()
		if err != nil || sum.Failed != 0 || sum.Copied != 1 {
			t.Fatalf("sync of the newer version: %+v %v", sum, err)
		}
		cur, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(cur) == len(old) {
			break
		}
		if try == 20 {
			t.Fatalf("the replicas of the two versions have %d and %d bytes", len(old), len(cur))
		}
	}

	s, hs := f.start(t)
	if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	c := client(hs.URL, "serve-access", "serve-secret-key")
	for _, rng := range []*string{nil, aws.String("bytes=10-19")} {
		o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String(key), Range: rng})
		if err == nil {
			b, _ := io.ReadAll(o.Body)
			o.Body.Close()
			t.Fatalf("GET (range %v) of a replica put back to an older version served %q", aws.ToString(rng), b)
		}
		if errCode(err) != "InternalError" {
			t.Fatalf("GET (range %v) of a replica put back to an older version: %v, want InternalError", aws.ToString(rng), err)
		}
	}
}

// countingBucket counts the GETs of a destination.
type countingBucket struct {
	backends.Bucket
	gets atomic.Int64
}

func (c *countingBucket) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	c.gets.Add(1)
	return c.Bucket.Get(ctx, key, opts)
}

// TestCatalogCache: a second catalog load with the cache reads no META; a
// second server on a held cache runs without it.
func TestCatalogCache(t *testing.T) {
	f := newFixture(t, true)
	dst := &countingBucket{Bucket: f.dst}
	f.job.Dest = dst
	path := filepath.Join(t.TempDir(), "cache", "serve.db")
	opts := Options{AccessKey: "serve-access", SecretKey: "serve-secret-key", Identities: []age.Identity{f.id}, CachePath: path}
	ctx := context.Background()
	s1, err := New([]replicator.Job{f.job}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.load(ctx, s1.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	if n := dst.gets.Load(); n < int64(len(f.data)) {
		t.Fatalf("first load: %d GETs for %d replicas", n, len(f.data))
	}
	s1.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", st, err)
	}
	dst.gets.Store(0)
	s2, err := New([]replicator.Job{f.job}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.load(ctx, s2.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	if n := dst.gets.Load(); n != 0 {
		t.Errorf("load with the cache: %d GETs, want none", n)
	}
	if n := s2.buckets["ledgers"].state.Load().objects; n != int64(len(f.data)) {
		t.Errorf("cached catalog has %d objects, want %d", n, len(f.data))
	}
	s3, err := New([]replicator.Job{f.job}, opts)
	if err != nil || s3.store.tempDir == "" {
		t.Fatalf("a server on a held cache: %v, not on a temporary file", err)
	}
	s3.Close()
}

// TestRangedReadFetchesAboutOnePart: a 1 MiB range in the middle of a
// four-part encrypted replica fetches the replica's head and tail once
// (opening it) and then about one part, never the object.
func TestRangedReadFetchesAboutOnePart(t *testing.T) {
	f := newFixture(t, true)
	s, hs := f.start(t)
	ctx := context.Background()
	if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	c := client(hs.URL, "serve-access", "serve-secret-key")
	big := f.data["big.bin"]
	read := func(from int64) int64 {
		before := s.metrics.fetchedBytes.Load()
		o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("big.bin"), Range: aws.String(fmt.Sprintf("bytes=%d-%d", from, from+1<<20-1))})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(o.Body)
		o.Body.Close()
		if err != nil || !bytes.Equal(b, big[from:from+1<<20]) {
			t.Fatalf("range at %d: %d bytes, %v", from, len(b), err)
		}
		return s.metrics.fetchedBytes.Load() - before
	}
	first := read(2*partSize + 1000)
	if first > 2*partSize+headSize+tailSize {
		t.Errorf("first 1 MiB range fetched %d replica bytes, more than 2 parts (%d) and the ends", first, 2*partSize)
	}
	again := read(partSize + 1000)
	t.Logf("1 MiB ranges: %d replica bytes fetched opening the replica, %d once opened (part size %d)", first, again, partSize)
	if again > 2*partSize || again < 1<<20 {
		t.Errorf("1 MiB range of an opened replica fetched %d replica bytes, want about one part (%d)", again, partSize)
	}
}

// TestVirtualHost: with a domain, a request to BUCKET.DOMAIN (the SDK's
// default addressing) reads the bucket; path style still works.
func TestVirtualHost(t *testing.T) {
	f := newFixture(t, false)
	s, err := New([]replicator.Job{f.job}, Options{AccessKey: "serve-access", SecretKey: "serve-secret-key", Domain: "dr.example.ca"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	ctx := context.Background()
	if err := s.load(ctx, s.buckets["ledgers"]); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(hs.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	// Every name resolves to the test server, as DNS would.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String("http://dr.example.ca:" + port), Region: "us-east-1", HTTPClient: hc,
		Credentials:                credentials.NewStaticCredentialsProvider("serve-access", "serve-secret-key", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("one byte")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(o.Body)
	o.Body.Close()
	if !bytes.Equal(b, f.data["one byte"]) {
		t.Fatalf("virtual-host GET: %q", b)
	}
	l, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("ledgers"), Prefix: aws.String("d1/")})
	if err != nil || len(l.Contents) != 8 {
		t.Fatalf("virtual-host listing: %v %d", err, len(l.Contents))
	}
	if _, err := client(hs.URL, "serve-access", "serve-secret-key").HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("empty")}); err != nil {
		t.Fatalf("path style with a domain set: %v", err)
	}
}

// TestServeRefresh: a catalog load after sync added an object, rewrote
// another and lost the replica of a third serves the new state: the new
// object appears, the rewritten one reads its new bytes, the lost one is
// gone; the objects counted follow.
func TestServeRefresh(t *testing.T) {
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			f := newFixture(t, encrypted)
			s, hs := f.start(t)
			ctx := context.Background()
			b := s.buckets["ledgers"]
			if err := s.load(ctx, b); err != nil {
				t.Fatal(err)
			}
			lost, _, err := b.cat.find("d0/f00.csv")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.dst.Delete(ctx, lost.rep.DestKey, ""); err != nil {
				t.Fatal(err)
			}
			put := func(key, body string) {
				if _, err := f.src.Put(ctx, "in/"+key, strings.NewReader(body), int64(len(body)), backends.PutOptions{ContentType: "text/plain"}); err != nil {
					t.Fatal(err)
				}
			}
			put("new/added.txt", "added after the first load")
			put("d1/f01.csv", "rewritten after the first load")
			j, err := journal.Open(filepath.Join(f.dir, "journal.db"), 0)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := engine.Sync(ctx, j, f.job, engine.Options{})
			j.Close()
			if err != nil || sum.Failed != 0 {
				t.Fatalf("sync: %+v %v", sum, err)
			}
			if err := s.load(ctx, b); err != nil {
				t.Fatal(err)
			}

			c := client(hs.URL, "serve-access", "serve-secret-key")
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("ledgers")})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range out.Contents {
				keys = append(keys, *o.Key)
			}
			if !slices.Contains(keys, "new/added.txt") || slices.Contains(keys, "d0/f00.csv") || len(keys) != len(f.data) {
				t.Fatalf("after the refresh: %d keys %q; want %d, with new/added.txt and without d0/f00.csv", len(keys), keys, len(f.data))
			}
			if n := b.state.Load().objects; n != int64(len(f.data)) {
				t.Errorf("%d objects counted, want %d", n, len(f.data))
			}
			for key, want := range map[string]string{"new/added.txt": "added after the first load", "d1/f01.csv": "rewritten after the first load"} {
				o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ledgers"), Key: aws.String(key)})
				if err != nil {
					t.Fatalf("GET %s: %v", key, err)
				}
				got, err := io.ReadAll(o.Body)
				o.Body.Close()
				if err != nil || string(got) != want {
					t.Fatalf("GET %s: %q %v, want %q", key, got, err, want)
				}
			}
			if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ledgers"), Key: aws.String("d0/f00.csv")}); errCode(err) != "NotFound" {
				t.Fatalf("HEAD of the object whose replica is gone: %v", err)
			}
		})
	}
}
