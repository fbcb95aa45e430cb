package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/journal"
)

// lockedBuffer is a bytes.Buffer that a child process writes while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// crashCase is one point of TestCrashMatrix where voyageur is killed.
type crashCase struct {
	name      string
	files     map[string]int // source key → size
	encrypted bool           // age + zstd with hashed names
	// deletes: a first sync, then this many source keys are deleted and
	// the killed run propagates deletes.
	deletes int
	// restore: a first sync; the killed run restores the replica to a
	// directory, the re-run restores again.
	restore     bool
	concurrency int
	// srcTrap and dstTrap pick the request the proxies hold (see
	// faultProxy.ServeHTTP); hits is how many held requests to wait for.
	srcTrap, dstTrap func(r *http.Request) string
	hits             int
	// slack is what the re-run may send beyond the bytes missing at the
	// destination at the kill: objects stored whose journal commit the kill
	// prevented are sent again.
	slack   int64
	wantLog string // the re-run's stderr says so
	// settled, when set, says when the run to kill has finished what the
	// answers the proxies let through set in motion: it is polled, with
	// the run's -v log (see copiedLines), between the held requests and
	// the kill. Unset, the kill follows the held requests at once.
	settled func(t testing.TB, log string, dst side) bool
}

// copiedLines counts the "copied" lines of a -v log: each follows the
// journal commit of one object (replicator's commit).
func copiedLines(log string) int { return strings.Count(log, "msg=copied ") }

// copiedKey reports whether a -v log says key was committed.
func copiedKey(key string) func(t testing.TB, log string, dst side) bool {
	return func(_ testing.TB, log string, _ side) bool {
		for line := range strings.Lines(log) {
			if strings.Contains(line, "msg=copied ") && strings.Contains(line, " key="+key+" ") {
				return true
			}
		}
		return false
	}
}

// copiedAtLeast is settled once n objects are committed.
func copiedAtLeast(n int) func(t testing.TB, log string, dst side) bool {
	return func(_ testing.TB, log string, _ side) bool { return copiedLines(log) >= n }
}

// copiedAllStored is settled once every whole object at the destination
// is committed.
func copiedAllStored(t testing.TB, log string, dst side) bool {
	return copiedLines(log) >= len(listObjects(t, dst, ""))
}

// TestCrashMatrix SIGKILLs the real binary at chosen points: a proxy holds
// one kind of request (before or after the store acted on it), reports it,
// and the test kills voyageur while it waits. Each time, `status` opens the
// journal, the next run exits 0 with the exact replica, no multipart upload
// is left, and it sends at most the bytes the destination lacked at the
// kill (plus, where the kill fell between a store's answer and the journal
// commit, that object again).
func TestCrashMatrix(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	large := map[string]int{"large.bin": 20 * mib, "small/a.json": 1500, "small/b.json": 2500}
	listing := map[string]int{"large.bin": 6*mib + 5}
	for i := range 1100 { // two listing pages
		listing[fmt.Sprintf("small/%04d.json", i)] = 100 + i%200
	}
	deletions := map[string]int{}
	for i := range 40 {
		deletions[fmt.Sprintf("ledger-%02d.csv", i)] = 1000 + i
	}
	var deleteCount atomic.Int32

	// What the kill may cost follows from replicator's order of work: an
	// object's commit comes after its store's answer (a "copied" line after
	// it), a part's checkpoint commit after its answer and before the part
	// gives back its transfer slot, and a small object holds its slot
	// through its PUT. So:
	cases := []crashCase{
		// Page 2 is asked for once the first batch, large.bin (two parts)
		// first, is queued: nothing holds large.bin up. The small objects
		// in flight at the kill (concurrency of them) and those whose
		// commit was waiting (at most concurrency more), each under 300
		// bytes, may have landed without their commit.
		{name: "during the listing", files: listing, concurrency: 8,
			srcTrap: once("hold", func(r *http.Request) bool { return isListing(r) && r.URL.Query().Get("continuation-token") != "" }),
			hits:    1, slack: 2 * 8 * 300, settled: copiedKey("large.bin")},
		// Parts 3 and 4 held take both slots (hits == concurrency): parts
		// 1 and 2 have given theirs back, so their checkpoints are
		// committed, and no small PUT is in flight; a small object stored
		// had its answer, its commit follows.
		{name: "mid-part", files: large, concurrency: 2,
			dstTrap: holdPartsFrom(3),
			hits:    2, wantLog: "resuming multipart upload", settled: copiedAllStored},
		{name: "mid-part, encrypted", files: large, encrypted: true, concurrency: 2,
			dstTrap: holdPartsFrom(3),
			hits:    2, wantLog: "resuming multipart upload", settled: copiedAllStored},
		// The held completion takes no slot: the small objects finish.
		{name: "after complete, before the journal commit", files: large, concurrency: 2,
			dstTrap: once("hold-answer", isComplete),
			hits:    1, wantLog: "upload was completed before the crash", settled: copiedAtLeast(len(large) - 1)},
		{name: "after complete, before the journal commit, encrypted", files: large, encrypted: true, concurrency: 2,
			dstTrap: once("hold-answer", isComplete),
			hits:    1, wantLog: "upload was completed before the crash", settled: copiedAtLeast(len(large) - 1)},
		// One worker, keys in order: small/b.json is the last.
		{name: "after a put, before the journal commit", files: large, concurrency: 1,
			dstTrap: once("hold-answer", func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/small/b.json")
			}),
			hits: 1, slack: 2500, settled: copiedAtLeast(len(large) - 1)},
		// Deletes and a restore send no object bytes: nothing to settle.
		{name: "during deletes", files: deletions, deletes: 10, concurrency: 4,
			dstTrap: func(r *http.Request) string {
				// The sixth delete and after: the store deletes, the
				// answer is held.
				if r.Method == http.MethodDelete && deleteCount.Add(1) >= 6 {
					return "hold-answer"
				}
				return ""
			},
			hits: 1},
		{name: "during a restore", files: large, restore: true, concurrency: 2,
			dstTrap: once("hold-body", isGetOf("large.bin")),
			hits:    1},
	}
	start := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			caseStart := time.Now()
			crashAt(t, srcSrv, dstSrv, c)
			t.Logf("%s: %s", c.name, time.Since(caseStart).Round(time.Millisecond))
		})
	}
	t.Logf("the matrix took %s", time.Since(start).Round(time.Millisecond))
}

// holdPartsFrom holds every upload of part n and after.
func holdPartsFrom(n int) func(r *http.Request) string {
	return func(r *http.Request) string {
		if p, err := strconv.Atoi(r.URL.Query().Get("partNumber")); err == nil && isUploadPart(r) && p >= n {
			return "hold"
		}
		return ""
	}
}

// seedObjects puts files into the source with 16 requests at a time.
func seedObjects(t testing.TB, s side, files map[string]int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for k, n := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			data := randomData(n, byte(len(k)+n))
			if _, err := s.client(t).PutObject(context.Background(), s.bucket, k, bytes.NewReader(data), int64(n), minio.PutObjectOptions{}); err != nil {
				t.Errorf("seed %s: %v", k, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// storedBytes returns, per destination key, the bytes the destination
// holds of it: the object's size, or the parts of its incomplete upload.
func storedBytes(t testing.TB, dst side) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for k, o := range listObjects(t, dst, "") {
		out[k] = o.size
	}
	for _, u := range storedParts(t, dst) {
		for _, p := range u.parts {
			out[u.key] += p.Size
		}
	}
	return out
}

// upload is an incomplete multipart upload and the parts it holds.
type upload struct {
	key, id string
	parts   []minio.ObjectPart
}

func storedParts(t testing.TB, dst side) []upload {
	t.Helper()
	core := minio.Core{Client: dst.client(t)}
	var out []upload
	for _, u := range incompleteUploads(t, dst) {
		key, id, _ := strings.Cut(u, " ")
		res, err := core.ListObjectParts(context.Background(), dst.bucket, key, id, 0, 1000)
		if err != nil {
			t.Fatalf("list parts of %s: %v", key, err)
		}
		out = append(out, upload{key, id, res.ObjectParts})
	}
	return out
}

// uncheckpointedParts lists the parts the destination holds that the
// journal's checkpoints lack: parts whose answer came but whose checkpoint
// commit the kill prevented, which the re-run sends again.
func uncheckpointedParts(t testing.TB, journalPath string, dst side) []string {
	t.Helper()
	j, err := journal.Open(journalPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	cps, err := j.Section("ledgers").Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{} // upload ID and part number
	for _, cp := range cps {
		for _, p := range cp.Parts {
			have[fmt.Sprint(cp.UploadID, p.Number)] = true
		}
	}
	var out []string
	for _, u := range storedParts(t, dst) {
		for _, p := range u.parts {
			if !have[fmt.Sprint(u.id, p.PartNumber)] {
				out = append(out, fmt.Sprintf("%s part %d", u.key, p.PartNumber))
			}
		}
	}
	return out
}

func crashAt(t *testing.T, srcSrv, dstSrv *minioserver.Server, c crashCase) {
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	seedObjects(t, src, c.files)
	extra := ""
	if c.encrypted {
		extra = newKeys(t, dir, false).encryptionYAML("hashed", "zstd")
	}
	config := func(name string, s, d side) string {
		sub := filepath.Join(dir, name)
		os.MkdirAll(sub, 0o700)
		jc := jobConfig{Journal: filepath.Join(dir, "journal.db"), Src: s, Dst: d, Concurrency: c.concurrency, ExtraJobLines: extra}
		if c.deletes > 0 {
			jc.Deletes, jc.MaxDelete = "propagate", "100%"
		}
		return writeConfig(t, sub, jc)
	}
	direct := config("direct", src, dst)
	if c.deletes > 0 || c.restore {
		syncJSON(t, 0, "-c", direct)
	}
	if c.deletes > 0 {
		keys := sortedKeys(c.files)
		for _, k := range keys[len(keys)-c.deletes:] {
			if err := src.client(t).RemoveObject(context.Background(), src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The run to kill, through proxies that hold the chosen requests.
	viaSrc, viaDst := src, dst
	var traps []*faultProxy
	if c.srcTrap != nil {
		p, u := newTrapProxy(t, srcSrv.URL, c.srcTrap)
		viaSrc.url, traps = u, append(traps, p)
	}
	if c.dstTrap != nil {
		p, u := newTrapProxy(t, dstSrv.URL, c.dstTrap)
		viaDst.url, traps = u, append(traps, p)
	}
	trapped := config("trapped", viaSrc, viaDst)
	restored := filepath.Join(dir, "restored")
	args := []string{"sync", "-c", trapped}
	if c.restore {
		args = []string{"restore", "-c", trapped, "--job", "ledgers", "--to", restored}
	}
	args = append(args, "-v") // the "copied" lines settled reads
	var stderr lockedBuffer
	cmd := exec.Command(voyageurBin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	hits := make(chan string, 64)
	for _, p := range traps {
		go func() {
			for h := range p.hits {
				hits <- h
			}
		}()
	}
	for n := 0; n < c.hits; n++ {
		select {
		case h := <-hits:
			t.Logf("held: %s", h)
		case <-exited:
			t.Fatalf("voyageur %s exited before the trap held a request:\n%s", args[0], stderr.String())
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("no request held within 60 s:\n%s", stderr.String())
		}
	}
	if c.settled != nil {
		deadline := time.Now().Add(60 * time.Second)
		for !c.settled(t, stderr.String(), dst) {
			select {
			case <-exited:
				t.Fatalf("voyageur %s exited while requests were held:\n%s", args[0], stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("the run did not settle within 60 s:\n%s", stderr.String())
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("voyageur was not killed (%s):\n%s", cmd.ProcessState, stderr.String())
	}
	for _, p := range traps {
		p.releaseAll()
	}
	checkOutput(t, args[0]+" (killed)", stderr.String())

	if c.restore {
		rerunRestore(t, src, c, direct, restored)
		return
	}
	atKill := storedBytes(t, dst)
	if parts := uncheckpointedParts(t, filepath.Join(dir, "journal.db"), dst); len(parts) > 0 {
		t.Errorf("killed between a part's answer and its checkpoint: %v; the re-run sends them again (see settled)", parts)
	}
	if st := runVoyageur(t, "status", "-c", direct); st.code != 0 {
		t.Fatalf("status after the kill: exit %d\n%s", st.code, st.stderr)
	}

	// The re-run, counting what it sends through a proxy without traps.
	counter, counterURL := newTrapProxy(t, dstSrv.URL, nil)
	viaCounter := dst
	viaCounter.url = counterURL
	res := runVoyageur(t, "sync", "--json", "-c", config("rerun", src, viaCounter))
	if res.code != 0 {
		t.Fatalf("re-run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if c.wantLog != "" && !strings.Contains(res.stderr, c.wantLog) {
		t.Errorf("the re-run did not log %q:\n%s", c.wantLog, res.stderr)
	}
	var missing int64
	for k, o := range listObjects(t, dst, "") {
		missing += max(0, o.size-atKill[k])
	}
	sent := counter.sent.Load()
	t.Logf("re-run: %+v; sent %d bytes, %d were missing at the kill", syncSummary(t, res), sent, missing)
	if sent > missing+c.slack {
		t.Errorf("the re-run sent %d bytes; at most %d were unfinished", sent, missing+c.slack)
	}

	if c.encrypted {
		if r := runVerify(t, 0, "-c", direct, "--identity", filepath.Join(dir, "identity.txt")); r.Source != len(c.files) || r.Deep != len(c.files) {
			t.Errorf("verify: %+v", r)
		}
	} else {
		assertSameBytes(t, src, dst)
	}
	if out := string(dstSrv.AWS(t, "s3api", "list-multipart-uploads", "--bucket", dst.bucket)); strings.Contains(out, "UploadId") {
		t.Errorf("multipart uploads left:\n%s", out)
	}
}

// rerunRestore restores again after a killed restore: the files are exact,
// no temporary file is left, and finished files are skipped.
func rerunRestore(t *testing.T, src side, c crashCase, cfg, dir string) {
	t.Helper()
	var temps []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".voyageur-restore-") {
			temps = append(temps, p)
		}
		return nil
	})
	if len(temps) == 0 {
		t.Error("no partial file at the kill: the restore was not interrupted mid-download")
	}
	res := runVoyageur(t, "restore", "--json", "-c", cfg, "--job", "ledgers", "--to", dir)
	if res.code != 0 {
		t.Fatalf("re-run of restore: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	s := syncSummary(t, res)
	t.Logf("re-run of restore: %+v", s)
	if s.Copied < 1 || s.Copied+s.Skipped != int64(len(c.files)) {
		t.Errorf("re-run of restore: %+v, want the unfinished files restored and the rest skipped", s)
	}
	state := map[string]srcObject{}
	for k, n := range c.files {
		state[k] = srcObject{data: randomData(n, byte(len(k)+n))}
	}
	assertDir(t, dir, state) // exact files, and no temporary file left
}

// assertSameBytes checks that dst holds exactly the keys of src with the
// same bytes: single-part ETags are MD5s, multipart objects are read.
func assertSameBytes(t testing.TB, src, dst side) {
	t.Helper()
	want, got := listObjects(t, src, ""), listObjects(t, dst, "")
	if a, b := sortedKeys(want), sortedKeys(got); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("replica keys differ: missing %v, extra %v", diff(a, b), diff(b, a))
	}
	for k, w := range want {
		g := got[k]
		switch {
		case g.size != w.size:
			t.Errorf("%s: size %d, want %d", k, g.size, w.size)
		case strings.Contains(w.etag+g.etag, "-"):
			if md5Object(t, src, k) != md5Object(t, dst, k) {
				t.Errorf("%s: replica bytes differ", k)
			}
		case g.etag != w.etag:
			t.Errorf("%s: MD5 %s, want %s", k, g.etag, w.etag)
		}
	}
}
