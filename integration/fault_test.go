package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// faultProxy stands between voyageur and a MinIO server on loopback and,
// with a seeded random source and a bounded budget of faults, answers 503
// SlowDown, answers 500, cuts the connection in the middle of the response
// body, or stalls before answering.
type faultProxy struct {
	target *url.URL
	proxy  *httputil.ReverseProxy
	client *http.Client

	mu                          sync.Mutex
	rng                         *rand.Rand
	budget                      int
	p503, p500, pCut, pStall    float64
	n503, n500, nCut, nStall, n int
}

func newFaultProxy(t testing.TB, target string, seed uint64) (*faultProxy, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &faultProxy{
		target: u, proxy: httputil.NewSingleHostReverseProxy(u),
		client: &http.Client{Transport: &http.Transport{Proxy: nil}},
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		budget: 400, p503: 0.08, p500: 0.03, pCut: 0.03, pStall: 0.02,
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *faultProxy) pick() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.budget <= 0 {
		return ""
	}
	x := f.rng.Float64()
	fault := ""
	switch {
	case x < f.p503:
		fault, f.n503 = "503", f.n503+1
	case x < f.p503+f.p500:
		fault, f.n500 = "500", f.n500+1
	case x < f.p503+f.p500+f.pCut:
		fault, f.nCut = "cut", f.nCut+1
	case x < f.p503+f.p500+f.pCut+f.pStall:
		fault, f.nStall = "stall", f.nStall+1
	}
	if fault != "" {
		f.budget--
	}
	return fault
}

func (f *faultProxy) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%d requests: %d × 503, %d × 500, %d cut, %d stalled", f.n, f.n503, f.n500, f.nCut, f.nStall)
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
}

func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch f.pick() {
	case "503":
		io.Copy(io.Discard, r.Body)
		s3Error(w, http.StatusServiceUnavailable, "SlowDown")
	case "500":
		io.Copy(io.Discard, r.Body)
		s3Error(w, http.StatusInternalServerError, "InternalError")
	case "stall":
		time.Sleep(1500 * time.Millisecond)
		f.proxy.ServeHTTP(w, r)
	case "cut":
		f.cut(w, r)
	default:
		f.proxy.ServeHTTP(w, r)
	}
}

// cut forwards the request, then sends the response's headers and half of
// its body (or, for an empty body, nothing), and closes the connection.
func (f *faultProxy) cut(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = f.target.Scheme, f.target.Host
	out.Host = r.Host // the signature covers the host voyageur used
	resp, err := f.client.Do(out)
	if err != nil {
		s3Error(w, http.StatusBadGateway, "BadGateway")
		return
	}
	defer resp.Body.Close()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	body, _ := io.ReadAll(resp.Body)
	if len(body) == 0 {
		return // the request took effect; its answer is lost
	}
	fmt.Fprintf(buf, "HTTP/1.1 %s\r\n", resp.Status)
	resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	resp.Header.Write(buf)
	buf.WriteString("\r\n")
	buf.Write(body[:len(body)/2])
	buf.Flush()
}

// TestFaultyLink: with faults injected between voyageur and both MinIO
// servers, syncs (plain and encrypted) end with an exact replica after at
// most a few runs, each exiting 0 or 1, and no multipart upload is left.
func TestFaultyLink(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypt), func(t *testing.T) { faultyLink(t, encrypt) })
	}
}

func faultyLink(t *testing.T, encrypt bool) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	for i := range 150 {
		writeFile(t, filepath.Join(dir, "data", fmt.Sprintf("small/%03d.json", i)), 200+i*37, byte(i))
	}
	for i, n := range []int{6*mib + 1, 11 * mib, 17*mib + 5} {
		writeFile(t, filepath.Join(dir, "data", fmt.Sprintf("large/%d.bin", i)), n, byte(100+i))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")

	srcFaults, srcURL := newFaultProxy(t, srcSrv.URL, 1)
	dstFaults, dstURL := newFaultProxy(t, dstSrv.URL, 2)
	extra := ""
	var k keys
	if encrypt {
		k = newKeys(t, dir, false)
		extra = k.encryptionYAML("plain", "zstd")
	}
	viaProxies := writeConfig(t, dir, jobConfig{Src: side{srv: srcSrv, bucket: src.bucket, kind: "aws", url: srcURL},
		Dst: side{srv: dstSrv, bucket: dst.bucket, kind: "minio", url: dstURL}, Concurrency: 8, ExtraJobLines: extra})
	runs := 0
	for ; runs < 5; runs++ {
		res := runVoyageur(t, "sync", "--json", "-c", viaProxies)
		if res.code != 0 && res.code != 1 {
			t.Fatalf("run %d: exit %d\n%s\n%s", runs+1, res.code, res.stdout, res.stderr)
		}
		t.Logf("run %d: exit %d: %+v", runs+1, res.code, syncSummary(t, res))
		if res.code == 0 {
			break
		}
	}
	if runs == 5 {
		t.Fatal("five runs through the faults did not finish the job")
	}
	t.Logf("source link: %s; destination link: %s", srcFaults, dstFaults)
	if srcFaults.n503+srcFaults.n500+srcFaults.nCut == 0 || dstFaults.n503+dstFaults.n500+dstFaults.nCut == 0 {
		t.Error("no fault was injected: the test proved nothing")
	}

	// Checked without faults: an exact replica, and no upload left.
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("incomplete uploads left: %v", up)
	}
	if !encrypt {
		assertReplica(t, src, dst, "", "")
		return
	}
	os.MkdirAll(filepath.Join(dir, "direct"), 0o700)
	direct := writeConfig(t, filepath.Join(dir, "direct"), jobConfig{Src: src, Dst: dst, ExtraJobLines: extra})
	if r := runVerify(t, 0, "-c", direct, "--identity", k.identity); r.Source != 153 || r.Deep != 153 {
		t.Errorf("verify: %+v", r)
	}
}
