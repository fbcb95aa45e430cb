package versitygwserver_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/integration/versitygwserver"
)

// TestServer: the gateway serves S3 on loopback with its POSIX backend
// (an object is a file under Dir), and stops.
func TestServer(t *testing.T) {
	s := versitygwserver.Start(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.URL != "http://"+s.Host {
		t.Fatalf("URL %q, Host %q: want a loopback endpoint", s.URL, s.Host)
	}
	a, b := s.CreateBucket(t), s.CreateBucket(t)
	if a == b {
		t.Fatalf("two buckets share the name %q", a)
	}

	ctx := context.Background()
	c := s.Client(t)
	if _, err := c.PutObject(ctx, a, "dir/hello.txt", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := c.GetObject(ctx, a, "dir/hello.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	o.Close()
	if err != nil || string(got) != "hello" {
		t.Fatalf("get dir/hello.txt: %q, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Dir, a, "dir", "hello.txt")); err != nil || string(b) != "hello" {
		t.Errorf("the POSIX backend holds %q, %v; want the object as a file", b, err)
	}

	s.Stop()
	s.Stop() // idempotent
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(s.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("gateway still answers after Stop: %s", resp.Status)
	}
}
