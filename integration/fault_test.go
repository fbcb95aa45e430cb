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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy stands between voyageur and a MinIO server on loopback and,
// with a seeded random source and a bounded budget of faults, answers 503
// SlowDown, answers 500, cuts the connection in the middle of the response
// body, or stalls before answering. Its trap, when set, picks requests to
// hold instead, so that a test can kill voyageur at a chosen point.
type faultProxy struct {
	target *url.URL
	proxy  *httputil.ReverseProxy
	client *http.Client

	mu                          sync.Mutex
	rng                         *rand.Rand
	budget                      int
	p503, p500, pCut, pStall    float64
	n503, n500, nCut, nStall, n int

	// trap decides, before the random faults, what to do with a request:
	// "" lets it through, or one of the hold actions (see ServeHTTP).
	// It runs on the proxy's goroutines.
	trap func(r *http.Request) string
	// hits receives a line naming each request the trap held.
	hits chan string
	// release ends every held request (at cleanup, or when a test lets
	// the traffic go on).
	release     chan struct{}
	releaseOnce sync.Once
	// sent counts the object bytes of PUT requests (objects and parts),
	// without the chunk signatures of aws-chunked bodies.
	sent atomic.Int64
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
		hits:    make(chan string, 64),
		release: make(chan struct{}),
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(f.releaseAll) // runs first: held handlers return, Close can finish
	return f, srv.URL
}

// newTrapProxy is a proxy without random faults whose trap holds requests.
func newTrapProxy(t testing.TB, target string, trap func(r *http.Request) string) (*faultProxy, string) {
	t.Helper()
	f, u := newFaultProxy(t, target, 0)
	f.budget, f.trap = 0, trap
	return f, u
}

func (f *faultProxy) releaseAll() { f.releaseOnce.Do(func() { close(f.release) }) }

// hold waits until the client goes away or the proxy releases its requests.
func (f *faultProxy) hold(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-f.release:
	}
}

func (f *faultProxy) hit(r *http.Request, action string) {
	select {
	case f.hits <- fmt.Sprintf("%s %s %s", action, r.Method, r.URL.RequestURI()):
	default:
	}
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

// ServeHTTP applies the trap's action, or a random fault, or forwards.
// The hold actions keep the request open until the client goes away (the
// test kills it, or it times out) or the proxy is released:
//
//   - "hold": the request never reaches the server.
//   - "hold-answer": the server handles the request; its answer is held.
//   - "hold-body": the server handles the request; an answer of at least
//     1 MiB is held after half its body (a smaller one goes through).
func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		n := r.ContentLength
		if d, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64); err == nil {
			n = d
		}
		f.sent.Add(max(n, 0))
	}
	action := ""
	if f.trap != nil {
		action = f.trap(r)
	}
	switch action {
	case "hold":
		// A consumed body lets the server notice the client going away.
		io.Copy(io.Discard, r.Body)
		f.hit(r, action)
		f.hold(r)
		return
	case "hold-answer", "hold-body":
		f.holdAnswer(w, r, action)
		return
	case "":
	default:
		panic("faultProxy: unknown trap action " + action)
	}
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

// forward sends the request to the server with voyageur's host, which its
// signature covers.
func (f *faultProxy) forward(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = f.target.Scheme, f.target.Host
	out.Host = r.Host
	return f.client.Do(out)
}

// holdAnswer forwards the request and holds its answer (see ServeHTTP).
func (f *faultProxy) holdAnswer(w http.ResponseWriter, r *http.Request, action string) {
	resp, err := f.forward(r)
	if err != nil {
		s3Error(w, http.StatusBadGateway, "BadGateway")
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if action == "hold-body" {
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if len(body) < mib {
			w.Write(body)
			return
		}
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
	}
	f.hit(r, action)
	f.hold(r)
}

// cut forwards the request, then sends the response's headers and half of
// its body (or, for an empty body, nothing), and closes the connection.
func (f *faultProxy) cut(w http.ResponseWriter, r *http.Request) {
	resp, err := f.forward(r)
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

// once returns a trap rule that answers action for the first request that
// matches, and "" for every other.
func once(action string, match func(r *http.Request) bool) func(r *http.Request) string {
	var fired atomic.Bool
	return func(r *http.Request) string {
		if match(r) && fired.CompareAndSwap(false, true) {
			return action
		}
		return ""
	}
}

// firstOf chains trap rules: the first that answers an action wins.
func firstOf(rules ...func(r *http.Request) string) func(r *http.Request) string {
	return func(r *http.Request) string {
		for _, rule := range rules {
			if a := rule(r); a != "" {
				return a
			}
		}
		return ""
	}
}

func isListing(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2"
}

func isGetOf(key string) func(r *http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+key)
	}
}

func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != ""
}

func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Get("uploadId") != ""
}

// TestStalledLink: with 2 s timeouts configured, requests whose answers
// never come — a listing, a download stalled mid-body, an uploaded part, a
// completed upload — are each cut after the timeout and retried, and the
// run ends promptly (the stalls themselves never end) with an exact replica.
func TestStalledLink(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	for i := range 5 {
		writeFile(t, filepath.Join(dir, "data", fmt.Sprintf("small/%d.json", i)), 1000+i, byte(i))
	}
	writeFile(t, filepath.Join(dir, "data", "large.bin"), 12*mib+3, 7) // three parts
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")

	srcProxy, srcURL := newTrapProxy(t, srcSrv.URL, firstOf(
		once("hold", isListing),
		once("hold-body", isGetOf("large.bin")),
	))
	dstProxy, dstURL := newTrapProxy(t, dstSrv.URL, firstOf(
		once("hold-answer", isUploadPart),
		once("hold-answer", isComplete),
	))
	timeouts := "timeouts: {connect: 2s, response: 2s, idle: 2s}"
	cfg := writeConfig(t, dir, jobConfig{
		Src: side{srv: srcSrv, bucket: src.bucket, kind: "aws", url: srcURL, extra: timeouts},
		Dst: side{srv: dstSrv, bucket: dst.bucket, kind: "minio", url: dstURL, extra: timeouts},
	})
	res := runVoyageur(t, "sync", "--json", "-c", cfg)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("sync through 4 endless stalls: %+v in %s", syncSummary(t, res), res.elapsed.Round(time.Millisecond))
	if res.elapsed > 30*time.Second {
		t.Errorf("the run took %s: the stalls were not cut by the 2 s timeouts", res.elapsed)
	}
	if n := len(srcProxy.hits) + len(dstProxy.hits); n != 4 {
		t.Errorf("%d requests stalled, want 4: the test did not stall what it meant to", n)
	}
	if got := strings.Count(res.stderr, "retrying storage request"); got < 4 {
		t.Errorf("%d retries logged, want one per stall at least:\n%s", got, res.stderr)
	}
	assertReplica(t, src, dst, "", "")
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("incomplete uploads left: %v", up)
	}
}
