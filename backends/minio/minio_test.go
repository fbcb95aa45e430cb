package minio

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/backendtest"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// TestMinIO runs everything that needs a real server against one MinIO
// server, with a fresh versioned bucket per Bucket.
func TestMinIO(t *testing.T) {
	srv := minioserver.Start(t)
	open := func(t *testing.T, bucket string, tr http.RoundTripper) backends.Bucket {
		b, err := New(Config{
			Bucket:    bucket,
			Region:    "us-east-1",
			URL:       srv.URL,
			AccessKey: srv.AccessKey,
			SecretKey: srv.SecretKey,
			Transport: tr,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	newBucket := func(t *testing.T) backends.Bucket { return open(t, srv.CreateBucket(t, true), nil) }
	locked := func(t *testing.T) backends.Bucket { return open(t, srv.CreateLockedBucket(t), nil) }
	recorded := func(t *testing.T, rec *backendtest.Recorder) backends.Bucket {
		return open(t, srv.CreateLockedBucket(t), rec)
	}
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, newBucket, backendtest.Caps{Versions: true, Locked: locked, Recorded: recorded})
	})
	t.Run("Uploads", func(t *testing.T) { testUploads(t, newBucket(t)) })
	t.Run("UnsignedPayload", func(t *testing.T) {
		rec := &backendtest.Recorder{}
		testUnsignedPayload(t, open(t, srv.CreateBucket(t, false), rec), rec)
	})
}

// testUnsignedPayload: over plain http too, bodies go out unsigned rather
// than hashed to be signed (see Put).
func testUnsignedPayload(t *testing.T, b backends.Bucket, rec *backendtest.Recorder) {
	ctx := t.Context()
	data := []byte("unsigned")
	if _, err := b.Put(ctx, "u/put", bytes.NewReader(data), int64(len(data)), backends.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := b.CreateMultipart(ctx, "u/part", backends.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UploadPart(ctx, "u/part", id, 1, bytes.NewReader(data), int64(len(data)), backends.PartOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"u/put", "u/part"} {
		reqs := rec.Writes(key)
		if len(reqs) == 0 {
			t.Fatalf("%s: no PUT recorded", key)
		}
		for _, req := range reqs {
			if got := req.Header.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
				t.Errorf("%s: X-Amz-Content-Sha256 %q, want UNSIGNED-PAYLOAD", key, got)
			}
		}
	}
}

// testUploads proves that Put and UploadPart work, with payloads that start
// mid-stream (minio-go rewinds bodies to offset 0).
func testUploads(t *testing.T, b backends.Bucket) {
	ctx := t.Context()
	part := make([]byte, 5<<20)
	rand.Read(part)

	r := bytes.NewReader(append([]byte("skip"), part[:1000]...))
	r.Seek(4, io.SeekStart)
	info, err := b.Put(ctx, "small", r, 1000, backends.PutOptions{Metadata: map[string]string{"Cache-Control": "x"}})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.ETag == "" || info.VersionID == "" {
		t.Errorf("put returned %+v, want an etag and a version", info)
	}
	checkContent(t, b, "small", part[:1000])
	st, err := b.Stat(ctx, "small", "")
	if err != nil || st.Metadata["cache-control"] != "x" {
		t.Errorf("stat: %+v, %v; want user metadata cache-control=x", st, err)
	}

	id, err := b.CreateMultipart(ctx, "big", backends.PutOptions{})
	if err != nil {
		t.Fatalf("create multipart: %v", err)
	}
	var parts []backends.Part
	for n, data := range [][]byte{part, part[:10]} {
		r := bytes.NewReader(append([]byte("skip"), data...))
		r.Seek(4, io.SeekStart)
		etag, err := b.UploadPart(ctx, "big", id, int32(n+1), r, int64(len(data)), backends.PartOptions{})
		if err != nil {
			t.Fatalf("upload part %d: %v", n+1, err)
		}
		parts = append(parts, backends.Part{Number: int32(n + 1), ETag: etag, Size: int64(len(data))})
	}
	if _, err := b.CompleteMultipart(ctx, "big", id, parts); err != nil {
		t.Fatalf("complete: %v", err)
	}
	checkContent(t, b, "big", append(part[:len(part):len(part)], part[:10]...))
}

func checkContent(t *testing.T, b backends.Bucket, key string, want []byte) {
	t.Helper()
	rc, info, err := b.Get(t.Context(), key, backends.GetOptions{Length: -1})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if !bytes.Equal(got, want) || info.Size != int64(len(want)) {
		t.Errorf("%s: got %d bytes (info size %d), want %d bytes", key, len(got), info.Size, len(want))
	}
}

func TestOVHEndpoint(t *testing.T) {
	for region, want := range map[string]string{
		"bhs":         "https://s3.bhs.io.cloud.ovh.net",
		"ca-east-tor": "https://s3.ca-east-tor.io.cloud.ovh.net",
	} {
		if got, err := OVHEndpoint(region); err != nil || got != want {
			t.Errorf("OVHEndpoint(%q) = %q, %v; want %q", region, got, err, want)
		}
	}
	for _, region := range []string{"", "gra", "BHS", "us-east-1"} {
		_, err := OVHEndpoint(region)
		if err == nil || !strings.Contains(err.Error(), `"`+region+`"`) ||
			!strings.Contains(err.Error(), "bhs") || !strings.Contains(err.Error(), "ca-east-tor") {
			t.Errorf("OVHEndpoint(%q): %v, want an error naming the region and the valid ones", region, err)
		}
	}
}

// fakeS3 answers every request with status and an S3 XML error carrying
// code, and counts the requests.
func fakeS3(status int, code string, calls *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+
			`</Code><Message>fake answer</Message><RequestId>1</RequestId></Error>`)
	})
}

func newFake(t *testing.T, url, caFile string) *Bucket {
	t.Helper()
	b, err := New(Config{
		Bucket: "bucket", Region: "us-east-1", URL: url,
		AccessKey: "AKIDTEST", SecretKey: "not-a-secret", CAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestErrorMapping checks the classification of S3 error answers, and that
// minio-go makes exactly one attempt.
func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code      string
		sentinel  error
		retryable bool
	}{
		{503, "SlowDown", nil, true},
		{500, "InternalError", nil, true},
		{403, "AccessDenied", nil, false},
		{404, "NoSuchKey", backends.ErrNotExist, false},
		{404, "NoSuchVersion", backends.ErrNotExist, false},
		{404, "NoSuchBucket", nil, false},
		{412, "PreconditionFailed", backends.ErrPreconditionFailed, false},
		{404, "NoSuchUpload", backends.ErrNoSuchUpload, false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(fakeS3(tc.status, tc.code, &calls))
			defer srv.Close()
			b := newFake(t, srv.URL, "")

			_, _, err := b.Get(t.Context(), "ledgers/a.csv", backends.GetOptions{})
			var he *backends.HTTPError
			if !errors.As(err, &he) || he.Status != tc.status || he.Code != tc.code {
				t.Fatalf("get: %v, want an HTTPError %d %s", err, tc.status, tc.code)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("get: %v does not wrap %v", err, tc.sentinel)
			}
			if got := backends.IsRetryable(err); got != tc.retryable {
				t.Errorf("IsRetryable(%v) = %v, want %v", err, got, tc.retryable)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (no minio-go retries)", n)
			}
			if !strings.HasPrefix(err.Error(), "get ledgers/a.csv: ") {
				t.Errorf("error %q does not name the operation and key", err)
			}
		})
	}
}

// TestNetworkError checks that a refused connection stays retryable.
func TestNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := newFake(t, url, "").Stat(t.Context(), "k", "")
	if err == nil || !backends.IsRetryable(err) {
		t.Fatalf("stat on a closed port: %v, want a retryable error", err)
	}
}

// TestCAFile checks that CAFile is trusted on top of $AWS_CA_BUNDLE (set on
// the development and CI hosts) and the system roots, and that a CA named
// by $AWS_CA_BUNDLE alone is trusted too.
func TestCAFile(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(fakeS3(404, "NoSuchKey", &calls))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake without the ca fails
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := newFake(t, srv.URL, caFile).Stat(t.Context(), "k", "")
	if !backends.IsNotExist(err) {
		t.Fatalf("stat with the ca file: %v, want a not-exist answer", err)
	}
	_, err = newFake(t, srv.URL, "").Stat(t.Context(), "k", "")
	if err == nil || backends.IsNotExist(err) {
		t.Fatalf("stat without the ca file: %v, want a tls error", err)
	}

	t.Setenv(backends.CABundleEnv, caFile)
	_, err = newFake(t, srv.URL, "").Stat(t.Context(), "k", "")
	if !backends.IsNotExist(err) {
		t.Fatalf("stat with the ca in $%s: %v, want a not-exist answer", backends.CABundleEnv, err)
	}
}

// TestNew checks configuration errors and the credential-free name.
func TestNew(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no bucket":    {URL: "http://127.0.0.1:9000", AccessKey: "a", SecretKey: "s"},
		"no url":       {Bucket: "b", AccessKey: "a", SecretKey: "s"},
		"url path":     {Bucket: "b", URL: "https://h/other", AccessKey: "a", SecretKey: "s"},
		"no keys":      {Bucket: "b", URL: "http://127.0.0.1:9000"},
		"bad ca file":  {Bucket: "b", URL: "https://h", AccessKey: "a", SecretKey: "s", CAFile: "/nonexistent/ca.pem"},
		"url userinfo": {Bucket: "b", URL: "https://user:topsecret@minio.example.ca:9000", AccessKey: "a", SecretKey: "s"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: error shows the url's password: %v", name, err)
		}
	}
	b, err := New(Config{Bucket: "b", URL: "https://minio.example.ca:9000/", AccessKey: "a", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Name(), "https://minio.example.ca:9000/b"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}
