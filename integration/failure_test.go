package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// denyProxy forwards to a MinIO server on loopback but answers 403
// AccessDenied to every write of a key containing "forbidden", the way a
// bucket policy would.
func denyProxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.Contains(r.URL.Path, "forbidden") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPartialFailure: objects the destination refuses are listed with their
// key and reason and the run exits 1, with everything else replicated; the
// failed objects stay queued and the next run finishes them.
func TestPartialFailure(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	for _, k := range []string{"ok/a.csv", "ok/b.csv", "forbidden/c.csv", "ok/d.csv"} {
		writeFile(t, filepath.Join(dir, "data", k), 2000, byte(len(k)))
	}
	writeFile(t, filepath.Join(dir, "data", "forbidden/big.bin"), 11*mib, 3)
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")

	proxied := dst
	proxied.url = denyProxy(t, dstSrv.URL)
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: proxied})
	res := runVoyageur(t, "sync", "-c", cfg)
	out := res.stdout + res.stderr
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", res.code, out)
	}
	for _, want := range []string{"copied 3", "failed 2", "failed forbidden/c.csv: put forbidden/c.csv: AccessDenied (403)", "failed forbidden/big.bin: create multipart forbidden/big.bin: AccessDenied (403)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := listObjects(t, dst, ""); len(got) != 3 {
		t.Errorf("destination holds %d objects, want the 3 allowed ones", len(got))
	}
	status := runVoyageur(t, "status", "-c", cfg)
	if !strings.Contains(status.stdout, "queued changes:     2") || !strings.Contains(status.stdout, "failing: forbidden/c.csv (1 attempts)") {
		t.Errorf("status does not show the queued failures:\n%s", status.stdout)
	}

	// Once the destination accepts them, the next run finishes the job.
	cfg = writeConfig(t, dir, jobConfig{Src: src, Dst: dst})
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 2 || s.Failed != 0 {
		t.Errorf("second run: %+v, want the 2 failed objects copied", s)
	}
	assertReplica(t, src, dst, "", "")
}

// TestWrongCredentials: a refused secret is a clear runtime error (exit 1)
// that never shows the secret.
func TestWrongCredentials(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	wrong := "wrong-secret-" + dstSrv.SecretKey
	addSecret(wrong)
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio", secretKey: wrong}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.csv"), 100, 1)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "a.csv"), "s3://"+src.bucket+"/a.csv")
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst})
	res := runVoyageur(t, "sync", "-c", cfg)
	out := res.stdout + res.stderr
	if res.code != 1 || !strings.Contains(out, "SignatureDoesNotMatch") {
		t.Errorf("exit %d, want 1 and the store's reason:\n%s", res.code, out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, dstSrv.SecretKey) {
		t.Error("the output shows the secret key")
	}
}
