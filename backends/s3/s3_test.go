package s3

import (
	"bytes"
	"context"
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
	open := func(t *testing.T, bucket string, client *http.Client) backends.Bucket {
		b, err := New(t.Context(), Config{
			Bucket:     bucket,
			URL:        srv.URL,
			PathStyle:  true,
			AccessKey:  srv.AccessKey,
			SecretKey:  srv.SecretKey,
			HTTPClient: client,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	newBucket := func(t *testing.T) backends.Bucket { return open(t, srv.CreateBucket(t, true), nil) }
	locked := func(t *testing.T) backends.Bucket { return open(t, srv.CreateLockedBucket(t), nil) }
	recorded := func(t *testing.T, rec *backendtest.Recorder) backends.Bucket {
		return open(t, srv.CreateLockedBucket(t), &http.Client{Transport: rec})
	}
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, newBucket, backendtest.Caps{Versions: true, Locked: locked, Recorded: recorded})
	})
	t.Run("Checksums", func(t *testing.T) { testChecksums(t, newBucket(t)) })
}

// testChecksums proves that Put and UploadPart work against a custom
// endpoint, with payloads that start mid-stream (the SDK must sign and send
// from the reader's current position).
func testChecksums(t *testing.T, b backends.Bucket) {
	ctx := t.Context()
	part := make([]byte, 5<<20)
	rand.Read(part)

	r := bytes.NewReader(append([]byte("skip"), part[:1000]...))
	r.Seek(4, io.SeekStart)
	info, err := b.Put(ctx, "small", r, 1000, backends.PutOptions{})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.ETag == "" || info.VersionID == "" {
		t.Errorf("put returned %+v, want an etag and a version", info)
	}
	checkContent(t, b, "small", part[:1000])

	id, err := b.CreateMultipart(ctx, "big", backends.PutOptions{})
	if err != nil {
		t.Fatalf("create multipart: %v", err)
	}
	var parts []backends.Part
	for n, data := range [][]byte{part, part[:10]} {
		etag, err := b.UploadPart(ctx, "big", id, int32(n+1), bytes.NewReader(data), int64(len(data)), backends.PartOptions{})
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
	b, err := New(t.Context(), Config{
		Bucket: "b", URL: url, PathStyle: true,
		AccessKey: "AKIDTEST", SecretKey: "not-a-secret",
		CAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestErrorMapping checks the classification of S3 error answers, and that
// the SDK makes exactly one attempt (its retryer is off).
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
				t.Errorf("%d requests, want 1 (no SDK retries)", n)
			}
			if msg := err.Error(); msg[:len("get ledgers/a.csv: ")] != "get ledgers/a.csv: " {
				t.Errorf("error %q does not name the operation and key", msg)
			}
		})
	}
}

// TestHeadNotFound checks that a 404 without a body (HEAD) means missing.
func TestHeadNotFound(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(fakeS3(404, "NoSuchKey", &calls))
	defer srv.Close()
	_, err := newFake(t, srv.URL, "").Stat(t.Context(), "k", "")
	if !backends.IsNotExist(err) {
		t.Fatalf("stat: %v, want a not-exist error", err)
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

// TestNew checks configuration errors.
func TestNew(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no bucket":    {URL: "http://127.0.0.1:9000"},
		"bad url":      {Bucket: "b", URL: "127.0.0.1:9000"},
		"url path":     {Bucket: "b", URL: "https://s3.example.ca/other"},
		"half keys":    {Bucket: "b", AccessKey: "AKID"},
		"bad ca file":  {Bucket: "b", CAFile: "/nonexistent/ca.pem"},
		"url userinfo": {Bucket: "b", URL: "https://user:topsecret@s3.example.ca"},
	} {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: error shows the url's password: %v", name, err)
		}
	}
	b, err := New(ctx, Config{Bucket: "b", URL: "https://s3.example.ca/", AccessKey: "a", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Name(), "https://s3.example.ca/b"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}

// TestNoDefaultChecksums checks that requests to a custom endpoint carry no
// CRC checksum nor aws-chunked trailer, which S3-compatible servers reject.
func TestNoDefaultChecksums(t *testing.T) {
	var seen []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"abc"`)
	}))
	defer srv.Close()
	b := newFake(t, srv.URL, "")
	if _, err := b.Put(t.Context(), "k", bytes.NewReader([]byte("data")), 4, backends.PutOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := b.UploadPart(t.Context(), "k", "id", 1, bytes.NewReader([]byte("data")), 4, backends.PartOptions{}); err != nil {
		t.Fatalf("upload part: %v", err)
	}
	for _, h := range seen {
		for name, v := range h {
			if strings.HasPrefix(strings.ToLower(name), "x-amz-checksum") || name == "X-Amz-Trailer" ||
				name == "X-Amz-Sdk-Checksum-Algorithm" || (name == "Content-Encoding" && strings.Contains(v[0], "aws-chunked")) {
				t.Errorf("request header %s: %v", name, v)
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("%d requests, want 2", len(seen))
	}
}
