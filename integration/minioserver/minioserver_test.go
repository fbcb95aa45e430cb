package minioserver_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

func TestServer(t *testing.T) {
	s := minioserver.Start(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.URL != "http://"+s.Host {
		t.Fatalf("URL %q, Host %q: want a loopback endpoint", s.URL, s.Host)
	}

	plain := s.CreateBucket(t, false)
	versioned := s.CreateBucket(t, true)
	if plain == versioned {
		t.Fatalf("two buckets share the name %q", plain)
	}

	if out := string(s.AWS(t, "s3api", "get-bucket-versioning", "--bucket", versioned)); !strings.Contains(out, "Enabled") {
		t.Errorf("versioned bucket %s: get-bucket-versioning printed %q", versioned, out)
	}
	if out := string(s.AWS(t, "s3api", "get-bucket-versioning", "--bucket", plain)); strings.Contains(out, "Enabled") {
		t.Errorf("plain bucket %s: get-bucket-versioning printed %q", plain, out)
	}

	src := filepath.Join(t.TempDir(), "hello.txt")
	if err := os.WriteFile(src, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.AWS(t, "s3", "cp", src, "s3://"+plain+"/dir/hello.txt")
	out := string(s.AWS(t, "s3api", "head-object", "--bucket", plain, "--key", "dir/hello.txt"))
	if !strings.Contains(out, `"ContentLength": 5`) {
		t.Errorf("head-object after cp printed %q, want ContentLength 5", out)
	}

	s.Stop()
	s.Stop() // idempotent
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(s.URL + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("server still answers after Stop: %s", resp.Status)
	}
}

func TestStartWithEnvTwoServers(t *testing.T) {
	a := minioserver.StartWithEnv(t, "MINIO_API_REQUESTS_MAX=64")
	b := minioserver.Start(t)
	if a.Host == b.Host || a.Dir == b.Dir || a.AccessKey == b.AccessKey {
		t.Fatalf("servers share an address, directory or key: %+v %+v", a, b)
	}
	bucket := a.CreateBucket(t, false)
	if out := string(a.AWS(t, "s3api", "list-buckets")); !strings.Contains(out, bucket) {
		t.Errorf("list-buckets on a printed %q, want %s", out, bucket)
	}
	if out := string(b.AWS(t, "s3api", "list-buckets")); strings.Contains(out, bucket) {
		t.Errorf("bucket %s of server a shows on server b: %q", bucket, out)
	}
}
