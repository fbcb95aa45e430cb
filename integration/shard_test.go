package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/integration/sqsserver"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

// countingProxy forwards to a MinIO server and counts what a shard asks of
// it: LIST requests (with the start-after of each), object writes and
// object deletes; writes and deletes of voyageur's own objects (under
// .voyageur/, such as a shard's clock object) count apart, as reserved.
type countingProxy struct {
	url        string
	lists      atomic.Int64
	writes     atomic.Int64
	deletes    atomic.Int64
	reserved   atomic.Int64
	mu         sync.Mutex
	startAfter []string
}

func newCountingProxy(t testing.TB, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case strings.Contains(r.URL.Path, "/"+replicator.ReservedPrefix) && r.Method != http.MethodGet && r.Method != http.MethodHead:
			p.reserved.Add(1)
		case r.Method == http.MethodGet && q.Has("list-type"):
			p.lists.Add(1)
			p.mu.Lock()
			p.startAfter = append(p.startAfter, q.Get("start-after"))
			p.mu.Unlock()
		case r.Method == http.MethodPut && !q.Has("partNumber") && !q.Has("retention") && !q.Has("tagging"),
			r.Method == http.MethodPost && q.Has("uploadId"):
			p.writes.Add(1)
		case r.Method == http.MethodDelete && !q.Has("uploadId"):
			p.deletes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// reset forgets what was counted so far.
func (p *countingProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lists.Store(0)
	p.writes.Store(0)
	p.deletes.Store(0)
	p.reserved.Store(0)
	p.startAfter = nil
}

func (p *countingProxy) firstStartAfter() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.startAfter) == 0 {
		return "(no list)"
	}
	return p.startAfter[0]
}

// shardWorker is one shard as a pod runs it: its own config (through its
// own counting proxies) and its own journal.
type shardWorker struct {
	cfg      string
	src, dst *countingProxy
}

func newShardWorker(t testing.TB, src, dst side, dstPrefix string) shardWorker {
	w := shardWorker{src: newCountingProxy(t, src.srv.URL), dst: newCountingProxy(t, dst.srv.URL)}
	w.configure(t, src, dst, dstPrefix, "50")
	return w
}

// configure writes the worker's config, through its proxies, with
// max_delete maxDelete.
func (w *shardWorker) configure(t testing.TB, src, dst side, dstPrefix, maxDelete string) {
	s, d := src, dst
	s.url, d.url = w.src.url, w.dst.url
	w.cfg = writeConfig(t, t.TempDir(), jobConfig{Src: s, Dst: d, DstPrefix: dstPrefix, Deletes: "propagate", MaxDelete: maxDelete, Concurrency: 16})
}

// runShards runs one process per argument list in parallel, as the pods
// of an Indexed Job do, and returns their results in order.
func runShards(t testing.TB, argv [][]string) []result {
	t.Helper()
	out := make([]result, len(argv))
	var wg sync.WaitGroup
	for i, args := range argv {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, voyageurBin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			out[i] = result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
			if err != nil && cmd.ProcessState == nil {
				out[i].code, out[i].stderr = -1, err.Error()
			}
		})
	}
	wg.Wait()
	for i, r := range out {
		checkOutput(t, argv[i][0], r.stdout+r.stderr)
	}
	return out
}

// TestShardedSync: a source of ~5 000 keys in 12 prefixes of unequal size
// (plus odd keys) synced by 4 shard processes at once gives exactly the
// replica one unsharded sync gives, each object written once; each shard
// lists only its range, the LIST total and the balance meet docs/scaling.md;
// a shard killed mid-run and rerun alone finishes its range; 4 → 8 shards
// refuses the old journals (exit 2) and, the way forward taken, copies
// nothing again and loses no delete; sharded restore (to a directory and to
// a bucket) and sharded verify.
func TestShardedSync(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srcSrv.Client(t)

	// 12 prefixes of very different sizes, and keys beside them.
	var keys []string
	for p, n := range []int{1500, 900, 700, 500, 400, 300, 250, 200, 120, 80, 40, 10} {
		for i := range n {
			keys = append(keys, fmt.Sprintf("p%02d/%05d.csv", p, i))
		}
	}
	keys = append(keys, "odd", "zz-last", "é/ü.txt", "a b/c+d.txt", "日本/語.txt", "~tilde", "p05.txt", "p050")
	content := func(key string) []byte { return []byte(strings.Repeat(key+"\n", 1+len(key)%7)) }
	put := func(key string, data []byte) {
		opts := minio.PutObjectOptions{ContentType: "text/csv"}
		if len(key)%3 == 0 {
			opts.UserMetadata = map[string]string{"origin": "ledger-" + fmt.Sprint(len(key))}
		}
		if _, err := sc.PutObject(ctx, src.bucket, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
			t.Errorf("seed %s: %v", key, err)
		}
	}
	seed := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := range seed {
				put(k, content(k))
			}
		})
	}
	for _, k := range keys {
		seed <- k
	}
	close(seed)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// One unsharded sync: the yardstick.
	one := newShardWorker(t, src, dst, "whole/")
	syncJSON(t, 0, "-c", one.cfg)
	oneLists, oneWrites := one.src.lists.Load(), one.dst.writes.Load()
	if oneWrites != int64(len(keys)) {
		t.Fatalf("unsharded sync wrote %d objects for %d keys", oneWrites, len(keys))
	}

	// The plan: one listing, kept for every run of 4 shards.
	workers := make([]shardWorker, 4)
	for i := range workers {
		workers[i] = newShardWorker(t, src, dst, "shard/")
	}
	dir := t.TempDir()
	plan4 := filepath.Join(dir, "plan4.json")
	if res := runVoyageur(t, "shard-plan", "-c", workers[0].cfg, "--job", "ledgers", "--shards", "4", "-o", plan4); res.code != 0 {
		t.Fatalf("shard-plan: exit %d: %s", res.code, res.stderr)
	}
	p, err := replicator.ReadShardPlan(readFile(t, plan4))
	if err != nil || p.Keys != int64(len(keys)) || len(p.Bounds) != 3 {
		t.Fatalf("plan %+v, %v", p, err)
	}
	layout := replicator.Layout{Bounds: p.Bounds}
	planLists := workers[0].src.lists.Load()
	workers[0].src.reset()

	var argv [][]string
	for i := range workers {
		argv = append(argv, []string{"sync", "--json", "-c", workers[i].cfg, "--job", "ledgers", "--shard", fmt.Sprintf("%d/4", i),
			"--shard-plan", plan4, "--journal", filepath.Join(dir, fmt.Sprintf("journal-%d.db", i))})
	}
	var lists, writes int64
	for i, res := range runShards(t, argv) {
		if res.code != 0 {
			t.Fatalf("shard %d/4: exit %d: %s", i, res.code, res.stderr)
		}
		var s replicator.Summary
		if err := json.Unmarshal([]byte(res.stdout), &s); err != nil {
			t.Fatalf("shard %d: %q: %v", i, res.stdout, err)
		}
		w := workers[i]
		lists += w.src.lists.Load()
		writes += w.dst.writes.Load()
		mean := float64(len(keys)) / 4
		if float64(s.Copied) < 0.75*mean || float64(s.Copied) > 1.25*mean {
			t.Errorf("shard %d copied %d objects, mean %.0f: outside ±25%%", i, s.Copied, mean)
		}
		if w.dst.writes.Load() != s.Copied {
			t.Errorf("shard %d wrote %d objects, copied %d", i, w.dst.writes.Load(), s.Copied)
		}
		// It lists its range: from its low key, a page per 1000 keys.
		if got, want := w.src.firstStartAfter(), layout.Range(i).After; got != want {
			t.Errorf("shard %d: first LIST starts after %q, want %q", i, got, want)
		}
		if max := s.Copied/1000 + 1; w.src.lists.Load() > max {
			t.Errorf("shard %d: %d LIST requests for %d keys (at most %d)", i, w.src.lists.Load(), s.Copied, max)
		}
		t.Logf("shard %d/4: copied %d, %d LIST requests, %d writes", i, s.Copied, w.src.lists.Load(), w.dst.writes.Load())
	}
	if writes != oneWrites {
		t.Errorf("4 shards wrote %d objects, one sync %d", writes, oneWrites)
	}
	// The plan's one listing counts too.
	if limit := float64(oneLists)*1.5 + 20*4; float64(lists+planLists) > limit {
		t.Errorf("4 shards made %d LIST requests and their plan %d, one sync %d: more than %.0f", lists, planLists, oneLists, limit)
	}
	t.Logf("LIST requests: one sync %d; the plan %d, 4 shards %d", oneLists, planLists, lists)
	sameReplica(t, dst, "whole/", "shard/")

	// A shard killed mid-run and rerun alone finishes its range.
	var fresh []string
	for i := range 600 {
		k := fmt.Sprintf("p00/%05d-new.csv", i)
		fresh = append(fresh, k)
		put(k, content(k))
	}
	victim := layout.ShardOf("p00/00000-new.csv")
	for _, k := range fresh {
		if layout.ShardOf(k) != victim {
			t.Fatalf("the new keys span shards")
		}
	}
	kill := exec.Command(voyageurBin, argv[victim]...)
	if err := kill.Start(); err != nil {
		t.Fatal(err)
	}
	w := workers[victim]
	before := w.dst.writes.Load()
	for deadline := time.Now().Add(2 * time.Minute); w.dst.writes.Load()-before < 20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	_ = kill.Process.Signal(syscall.SIGKILL)
	_ = kill.Wait()
	if n := w.dst.writes.Load() - before; n >= int64(len(fresh)) {
		t.Logf("the killed shard had written all %d new objects already", n)
	}
	again := runShards(t, [][]string{argv[victim]})[0]
	if again.code != 0 {
		t.Fatalf("shard %d rerun: exit %d: %s", victim, again.code, again.stderr)
	}
	syncJSON(t, 0, "-c", one.cfg)
	sameReplica(t, dst, "whole/", "shard/")

	// 4 → 8: the journals of 4 do not cover the ranges of 8; refused with
	// exit 2 and the way forward, having done nothing.
	plan8 := filepath.Join(dir, "plan8.json")
	if res := runVoyageur(t, "shard-plan", "-c", workers[0].cfg, "--job", "ledgers", "--shards", "8", "-o", plan8); res.code != 0 {
		t.Fatalf("shard-plan 8: exit %d: %s", res.code, res.stderr)
	}
	gone := []string{"p01/00007.csv", "p00/01400.csv", "zz-last", "p07/00100.csv"}
	for _, k := range gone {
		if err := sc.RemoveObject(ctx, src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	workers8 := make([]shardWorker, 8)
	argv8 := func(journal string) [][]string {
		var out [][]string
		for i := range workers8 {
			out = append(out, []string{"sync", "--json", "-c", workers8[i].cfg, "--job", "ledgers", "--shard", fmt.Sprintf("%d/8", i),
				"--shard-plan", plan8, "--journal", filepath.Join(dir, fmt.Sprintf(journal, i))})
		}
		return out
	}
	for i := range workers8 {
		workers8[i] = newShardWorker(t, src, dst, "shard/")
	}
	refused := 0
	for i, res := range runShards(t, argv8("journal-%d.db")) {
		switch res.code {
		case 2:
			refused++
			if !strings.Contains(res.stderr, "--journal") || !strings.Contains(res.stderr, "another shard") {
				t.Errorf("shard %d/8 refused without the way forward: %s", i, res.stderr)
			}
		case 0:
		default:
			t.Errorf("shard %d/8 on the journals of 4: exit %d: %s", i, res.code, res.stderr)
		}
	}
	if refused == 0 {
		t.Error("no shard of 8 refused a journal of 4 that does not cover its range")
	}
	// The way forward: the old layout once, then 8 on new journals.
	for i, res := range runShards(t, argv) {
		if res.code != 0 {
			t.Fatalf("shard %d/4 again: exit %d: %s", i, res.code, res.stderr)
		}
	}
	var w8before int64
	for _, w := range workers8 {
		w8before += w.dst.writes.Load()
	}
	for i, res := range runShards(t, argv8("journal8-%d.db")) {
		var s replicator.Summary
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &s) != nil || s.Copied != 0 {
			t.Errorf("shard %d/8 on a new journal: exit %d, %s %s", i, res.code, res.stdout, res.stderr)
		}
	}
	var w8after int64
	for _, w := range workers8 {
		w8after += w.dst.writes.Load()
	}
	if w8after != w8before {
		t.Errorf("8 shards on new journals wrote %d objects again", w8after-w8before)
	}
	// Deletes after the switch reach the replica.
	for _, k := range []string{"p02/00001.csv", "p11/00009.csv", "odd"} {
		if err := sc.RemoveObject(ctx, src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, res := range runShards(t, argv8("journal8-%d.db")) {
		if res.code != 0 {
			t.Errorf("shard %d/8: exit %d: %s", i, res.code, res.stderr)
		}
	}
	syncJSON(t, 0, "-c", one.cfg)
	sameReplica(t, dst, "whole/", "shard/")
	if got := listObjects(t, dst, "shard/"); len(got) != len(keys)+len(fresh)-len(gone)-3 {
		t.Errorf("replica holds %d objects, want %d", len(got), len(keys)+len(fresh)-len(gone)-3)
	}

	// Sharded restore, to one directory and to one bucket, every SHA-256
	// checked against the source; then sharded verify.
	want := map[string][32]byte{}
	for key := range listObjects(t, src, "") {
		r, err := sc.GetObject(ctx, src.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(r); err != nil {
			t.Fatal(err)
		}
		r.Close()
		want[key] = sha256.Sum256(b.Bytes())
	}
	restoreDir := filepath.Join(dir, "restored")
	outBucket := dstSrv.CreateBucket(t, false)
	for _, to := range []string{restoreDir, "canada:" + outBucket + "/back/"} {
		var rargv [][]string
		for i := range 4 {
			rargv = append(rargv, []string{"restore", "--json", "-c", workers[i].cfg, "--job", "ledgers", "--to", to,
				"--shard", fmt.Sprintf("%d/4", i), "--shard-plan", plan4})
		}
		total := int64(0)
		for i, res := range runShards(t, rargv) {
			var s replicator.Summary
			if res.code != 0 || json.Unmarshal([]byte(res.stdout), &s) != nil {
				t.Fatalf("restore shard %d to %s: exit %d: %s %s", i, to, res.code, res.stdout, res.stderr)
			}
			total += s.Copied
		}
		if total != int64(len(want)) {
			t.Errorf("4 restore shards to %s restored %d objects, want %d", to, total, len(want))
		}
	}
	for key, sum := range want {
		b, err := os.ReadFile(filepath.Join(restoreDir, filepath.FromSlash(key)))
		if err != nil || sha256.Sum256(b) != sum {
			t.Errorf("restored %s: SHA-256 differs or missing (%v)", key, err)
		}
		r, err := dstSrv.Client(t).GetObject(ctx, outBucket, "back/"+key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		_, err = got.ReadFrom(r)
		r.Close()
		if err != nil || sha256.Sum256(got.Bytes()) != sum {
			t.Errorf("restored to bucket %s: SHA-256 differs or missing (%v)", key, err)
		}
	}

	bad := "p03/00042.csv"
	corrupt := []byte("not what the source holds\n")
	if _, err := dstSrv.Client(t).PutObject(ctx, dst.bucket, "shard/"+bad, bytes.NewReader(corrupt), int64(len(corrupt)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	var vargv [][]string
	for i := range 4 {
		vargv = append(vargv, []string{"verify", "--json", "-c", workers[i].cfg, "--job", "ledgers", "--shard", fmt.Sprintf("%d/4", i), "--shard-plan", plan4})
	}
	found, sources := 0, 0
	for i, res := range runShards(t, vargv) {
		var rep recovery.VerifyReport
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("verify shard %d: %q %s", i, res.stdout, res.stderr)
		}
		sources += rep.Source
		switch {
		case res.code == 1 && onlyFinding(rep) == bad && i == layout.ShardOf(bad):
			found++
		case res.code != 0 || !rep.OK():
			t.Errorf("verify shard %d: exit %d, %+v", i, res.code, rep)
		}
	}
	if found != 1 || sources != len(want) {
		t.Errorf("sharded verify: the corrupt replica found by %d shards, %d source objects checked of %d", found, sources, len(want))
	}
}

// onlyFinding names the one object a verify report finds wrong, "" when it is
// not exactly one.
func onlyFinding(rep recovery.VerifyReport) string {
	var all []string
	all = append(all, rep.Missing...)
	all = append(all, rep.Extra...)
	all = append(all, rep.Stale...)
	for _, f := range rep.Corrupt {
		all = append(all, f.Key)
	}
	if len(all) != 1 {
		return ""
	}
	return all[0]
}

// sameReplica asserts two replica prefixes hold the same objects: bytes
// (ETag of a single-part upload is its MD5), content type and metadata.
func sameReplica(t *testing.T, dst side, a, b string) {
	t.Helper()
	ra, rb := listObjects(t, dst, a), listObjects(t, dst, b)
	if len(ra) != len(rb) {
		t.Errorf("%s holds %d objects, %s %d", a, len(ra), b, len(rb))
	}
	for k, oa := range ra {
		ob, ok := rb[k]
		if !ok || oa.size != ob.size || oa.etag != ob.etag {
			t.Errorf("%s: %s %+v, %s %+v", k, a, oa, b, ob)
			continue
		}
		sa, sb := statObject(t, dst, a+k), statObject(t, dst, b+k)
		if sa.contentType != sb.contentType || fmt.Sprint(sourceMeta(t, sa)) != fmt.Sprint(sourceMeta(t, sb)) {
			t.Errorf("%s: %s %s %v, %s %s %v", k, a, sa.contentType, sa.meta, b, sb.contentType, sb.meta)
		}
	}
	for k := range rb {
		if _, ok := ra[k]; !ok {
			t.Errorf("%s: in %s only", k, b)
		}
	}
}

// TestShardedHashedNames: a replica with hashed names is restored, listed
// and verified by 4 shards that split its hex name space evenly, without
// a plan: each shard holds about a quarter, together every object once,
// and one corrupted replica is found by exactly the shard that owns it.
func TestShardedHashedNames(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srcSrv.Client(t)
	dir := t.TempDir()
	want := map[string][32]byte{}
	seed := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range seed {
				key := fmt.Sprintf("statements/%d/%04d.pdf", i%7, i)
				data := randomData(50+i%300, byte(i))
				if _, err := sc.PutObject(ctx, src.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					t.Errorf("seed %s: %v", key, err)
				}
				mu.Lock()
				want[key] = sha256.Sum256(data)
				mu.Unlock()
			}
		})
	}
	for i := range 2000 {
		seed <- i
	}
	close(seed)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	k := newKeys(t, dir, false)
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "replica/", Concurrency: 16, ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
	syncJSON(t, 0, "-c", cfg)

	shardArgs := func(args ...string) [][]string {
		var out [][]string
		for i := range 4 {
			out = append(out, append(slices.Clone(args), "--shard", fmt.Sprintf("%d/4", i)))
		}
		return out
	}
	mean := float64(len(want)) / 4
	balanced := func(what string, i int, n int) {
		if float64(n) < 0.75*mean || float64(n) > 1.25*mean {
			t.Errorf("%s shard %d: %d objects, mean %.0f: outside ±25%%", what, i, n, mean)
		}
	}

	// ls: the shards' listings are disjoint and make the whole.
	seen := map[string]int{}
	for i, res := range runShards(t, shardArgs("ls", "--json", "-c", cfg, "--job", "ledgers", "--identity", k.identity)) {
		if res.code != 0 {
			t.Fatalf("ls shard %d: exit %d: %s", i, res.code, res.stderr)
		}
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		balanced("ls", i, len(lines))
		for _, line := range lines {
			var e struct {
				Key        string `json:"key"`
				ReplicaKey string `json:"replica_key"`
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("ls shard %d: %q: %v", i, line, err)
			}
			if r := replicator.EvenLayout("replica/", 4, replicator.HexDigits).ShardOf(e.ReplicaKey); r != i {
				t.Errorf("ls shard %d listed %s, a replica of shard %d", i, e.ReplicaKey, r)
			}
			seen[e.Key]++
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s listed by %d shards", key, seen[key])
		}
	}

	// restore: 4 processes into one directory, every SHA-256 checked.
	to := filepath.Join(dir, "restored")
	for i, res := range runShards(t, shardArgs("restore", "--json", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", to)) {
		var s replicator.Summary
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &s) != nil {
			t.Fatalf("restore shard %d: exit %d: %s %s", i, res.code, res.stdout, res.stderr)
		}
		balanced("restore", i, int(s.Copied))
	}
	for key, sum := range want {
		b, err := os.ReadFile(filepath.Join(to, filepath.FromSlash(key)))
		if err != nil || sha256.Sum256(b) != sum {
			t.Errorf("restored %s: SHA-256 differs or missing (%v)", key, err)
		}
	}

	// verify: one replica overwritten; only its shard finds it.
	bad := "statements/3/0042.pdf"
	badKey := "replica/" + crypto.HashedName(readFile(t, k.nameSecret), bad)
	junk := randomData(400, 9)
	if _, err := dstSrv.Client(t).PutObject(ctx, dst.bucket, badKey, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	owner := replicator.EvenLayout("replica/", 4, replicator.HexDigits).ShardOf(badKey)
	sources := 0
	for i, res := range runShards(t, shardArgs("verify", "--json", "-c", cfg, "--job", "ledgers", "--identity", k.identity)) {
		var rep recovery.VerifyReport
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("verify shard %d: %q %s", i, res.stdout, res.stderr)
		}
		sources += rep.Source
		if i == owner {
			if res.code != 1 || len(rep.Corrupt) != 1 || rep.Corrupt[0].Key != bad && rep.Corrupt[0].Key != badKey {
				t.Errorf("verify shard %d (the owner): exit %d, %+v", i, res.code, rep)
			}
		} else if res.code != 0 || !rep.OK() {
			t.Errorf("verify shard %d: exit %d, %+v", i, res.code, rep)
		}
	}
	if sources != len(want) {
		t.Errorf("4 verify shards checked %d source objects of %d", sources, len(want))
	}
}

// TestShardFlags: bad --shard values, and a plan for another shard count,
// exit 2 naming the flag, on every command that takes it, before anything
// is read or written.
func TestShardFlags(t *testing.T) {
	srv := startServer(t)
	src := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "replica/"})
	plan := filepath.Join(dir, "plan.json")
	if res := runVoyageur(t, "shard-plan", "-c", cfg, "--job", "ledgers", "--shards", "8", "-o", plan); res.code != 0 {
		t.Fatalf("shard-plan: exit %d: %s", res.code, res.stderr)
	}
	commands := map[string][]string{
		"sync":    {"sync", "-c", cfg, "--job", "ledgers"},
		"restore": {"restore", "-c", cfg, "--job", "ledgers", "--to", filepath.Join(dir, "out")},
		"verify":  {"verify", "-c", cfg, "--job", "ledgers"},
		"ls":      {"ls", "-c", cfg, "--job", "ledgers"},
	}
	for name, base := range commands {
		for _, tc := range []struct {
			args []string
			says string
		}{
			{[]string{"--shard", "4/4"}, `--shard "4/4": shard index "4": want a whole number from 0 to 3`},
			{[]string{"--shard", "x"}, `--shard "x": want I/N`},
			{[]string{"--shard", "1/0"}, `--shard "1/0": shard count "0"`},
			{[]string{"--shard", "auto/4"}, "JOB_COMPLETION_INDEX"},
			{[]string{"--shard", "1/4", "--shard-plan", plan}, "into 8 shards"},
			{[]string{"--shard-plan", plan}, "needs --shard"},
		} {
			res := runVoyageur(t, append(slices.Clone(base), tc.args...)...)
			if res.code != 2 || !strings.Contains(res.stderr, tc.says) {
				t.Errorf("%s %v: exit %d, want 2 saying %q: %s", name, tc.args, res.code, tc.says, res.stderr)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "journal.db")); err == nil {
		t.Error("a refused sync created the journal")
	}
	// --journal replaces the config's journal.
	other := filepath.Join(dir, "shard-0.db")
	if res := runVoyageur(t, "sync", "-c", cfg, "--shard", "0/2", "--journal", other); res.code != 0 {
		t.Fatalf("sync --journal: exit %d: %s", res.code, res.stderr)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("sync --journal %s: %v", other, err)
	}
	if res := runVoyageur(t, "status", "-c", cfg, "--journal", other); res.code != 0 || strings.Contains(res.stdout, "no journal") {
		t.Errorf("status --journal: exit %d: %s %s", res.code, res.stdout, res.stderr)
	}
}

// TestWatchShardedSQS: an SNS fan-out stands in as the same events posted
// to one queue per shard; 2 watch --shard processes, each on its queue and
// its journal, replicate every key once and delete every message, their
// own and the other shard's.
func TestWatchShardedSQS(t *testing.T) {
	sq := sqsserver.Start(t)
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srcSrv.Client(t)
	put := func(key string) {
		data := randomData(100+len(key), byte(len(key)))
		if _, err := sc.PutObject(ctx, src.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i += 4 {
		put(fmt.Sprintf("in/%02d.csv", i))
	}
	dir := t.TempDir()
	type shard struct {
		queue string
		dst   *countingProxy
		w     *watcher
	}
	shards := make([]shard, 2)
	var cfgs []string
	for i := range shards {
		shards[i].queue = sq.CreateQueue(t, fmt.Sprintf("voyageur-events-%d", i))
		shards[i].dst = newCountingProxy(t, dstSrv.URL)
		d := dst
		d.url = shards[i].dst.url
		cfgs = append(cfgs, writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: d,
			ExtraJobLines: fmt.Sprintf("    events: [{sqs: %q, url: %q}]\n", shards[i].queue, sq.URL)}))
	}
	plan := filepath.Join(dir, "plan.json")
	if res := runVoyageur(t, "shard-plan", "-c", cfgs[0], "--job", "ledgers", "--shards", "2", "-o", plan); res.code != 0 {
		t.Fatalf("shard-plan: exit %d: %s", res.code, res.stderr)
	}
	for i := range shards {
		shards[i].w = startWatch(t, cfgs[i], "--job", "ledgers", "--shard", fmt.Sprintf("%d/2", i), "--shard-plan", plan,
			"--journal", filepath.Join(dir, fmt.Sprintf("watch-%d.db", i)))
	}
	for i := 0; i < 40; i += 4 {
		waitFor(t, 30*time.Second, "the reconcile scans", exists(t, dst, fmt.Sprintf("in/%02d.csv", i)))
	}
	var fresh []string
	for i := range 40 {
		k := fmt.Sprintf("in/%02d-new.csv", i)
		fresh = append(fresh, k)
		put(k)
		for _, s := range shards {
			sq.Send(t, s.queue, s3Record(src.bucket, k, 100+len(k)))
		}
	}
	for _, k := range fresh {
		waitFor(t, 60*time.Second, k+" at the destination", exists(t, dst, k))
	}
	for i, s := range shards {
		waitFor(t, 30*time.Second, fmt.Sprintf("every message of queue %d deleted", i), func() bool {
			visible, inflight := sq.Counts(t, s.queue)
			return visible == 0 && inflight == 0
		})
	}
	total, replicated := int64(0), 0.0
	for i, s := range shards {
		n := s.w.metric(t, `voyageur_objects_replicated_total{voyageur_job="ledgers"}`)
		t.Logf("watch shard %d/2: replicated %v, %d writes", i, n, s.dst.writes.Load())
		if n == 0 {
			t.Errorf("watch shard %d replicated nothing", i)
		}
		replicated += n
		total += s.dst.writes.Load()
		s.w.stop(t)
	}
	if want := 10 + len(fresh); total != int64(want) || replicated != float64(want) {
		t.Errorf("2 watch shards wrote %d objects (replicated %v), want each of %d once", total, replicated, want)
	}
}

// TestShardStaleUploads: a shard aborts only the stale multipart uploads
// of its own keys: the others' may be another shard's upload in progress,
// recorded in a journal it cannot see.
func TestShardStaleUploads(t *testing.T) {
	srv := startServer(t)
	src := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	core := minio.Core{Client: dst.client(t)}
	// An even split of 2 over hex: keys from 0 to 7... in shard 0, 8... to
	// f... in shard 1.
	for _, k := range []string{"replica/0stale.bin", "replica/fstale.bin"} {
		if _, err := core.NewMultipartUpload(ctx, dst.bucket, k, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "replica/"})
	left := func() string {
		var keys []string
		for _, u := range incompleteUploads(t, dst) {
			keys = append(keys, strings.Fields(u)[0])
		}
		return strings.Join(keys, " ")
	}
	syncJSON(t, 0, "-c", cfg, "--shard", "1/2", "--journal", filepath.Join(dir, "1.db"))
	if got := left(); got != "replica/0stale.bin" {
		t.Fatalf("after shard 1/2, uploads left: %q, want shard 0's only", got)
	}
	syncJSON(t, 0, "-c", cfg, "--shard", "0/2", "--journal", filepath.Join(dir, "0.db"))
	if got := left(); got != "" {
		t.Errorf("after shard 0/2, uploads left: %q", got)
	}
}

// TestShardMaxDelete: max_delete holds per shard: a shard with more
// deletes than it refuses them all, while another shard's deletes go
// ahead.
func TestShardMaxDelete(t *testing.T) {
	srv := startServer(t)
	src := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srv.Client(t)
	for _, k := range []string{"0a", "0b", "0c", "fa", "fb"} {
		if _, err := sc.PutObject(ctx, src.bucket, k, strings.NewReader(k), 2, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, Deletes: "propagate", MaxDelete: "1"})
	shard := func(i int) []string {
		return []string{"-c", cfg, "--shard", fmt.Sprintf("%d/2", i), "--journal", filepath.Join(dir, fmt.Sprintf("%d.db", i))}
	}
	syncJSON(t, 0, shard(0)...)
	syncJSON(t, 0, shard(1)...)
	for _, k := range []string{"0a", "0b", "fa"} {
		if err := sc.RemoveObject(ctx, src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if s := syncJSON(t, 1, shard(0)...); s.Deleted != 0 || !strings.Contains(s.Error, "refusing to delete 2 replicas") {
		t.Errorf("shard 0 with 2 deletes over max_delete 1: %+v", s)
	}
	if s := syncJSON(t, 0, shard(1)...); s.Deleted != 1 {
		t.Errorf("shard 1 with 1 delete: %+v", s)
	}
	if got := sortedKeys(listObjects(t, dst, "")); strings.Join(got, " ") != "0a 0b 0c fb" {
		t.Errorf("replica holds %v", got)
	}
}

// TestShardChangeDeletes: keys deleted at the source between the last run
// of 4 shards and the first run of 8 on fresh journals are deleted by the
// 8 shards' rebuilds, which no index told of them: exactly their replicas
// go, nothing is written again, and max_delete holds per shard (the shard
// with more than it deletes nothing and fails, then deletes them once
// allowed).
func TestShardChangeDeletes(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srcSrv.Client(t)
	var keys []string
	for p, n := range []int{400, 250, 150, 100, 60, 30, 10} {
		for i := range n {
			keys = append(keys, fmt.Sprintf("q%d/%04d.csv", p, i))
		}
	}
	keys = append(keys, "odd", "zz-last", "é/ü.txt")
	seed := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := range seed {
				data := []byte(strings.Repeat(k+"\n", 1+len(k)%5))
				if _, err := sc.PutObject(ctx, src.bucket, k, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					t.Errorf("seed %s: %v", k, err)
				}
			}
		})
	}
	for _, k := range keys {
		seed <- k
	}
	close(seed)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	dir := t.TempDir()
	plans := map[int]string{}
	for _, n := range []int{4, 8} {
		plans[n] = filepath.Join(dir, fmt.Sprintf("plan%d.json", n))
	}
	shards := func(n int, workers []shardWorker) [][]string {
		var argv [][]string
		for i := range n {
			argv = append(argv, []string{"sync", "--json", "-c", workers[i].cfg, "--job", "ledgers", "--shard", fmt.Sprintf("%d/%d", i, n),
				"--shard-plan", plans[n], "--journal", filepath.Join(dir, fmt.Sprintf("journal-%d-of-%d.db", i, n))})
		}
		return argv
	}
	newWorkers := func(n int, maxDelete string) []shardWorker {
		ws := make([]shardWorker, n)
		for i := range ws {
			ws[i] = shardWorker{src: newCountingProxy(t, src.srv.URL), dst: newCountingProxy(t, dst.srv.URL)}
			ws[i].configure(t, src, dst, "shard/", maxDelete)
		}
		return ws
	}
	workers4, workers8 := newWorkers(4, "3"), newWorkers(8, "3")
	for n, ws := range map[int][]shardWorker{4: workers4, 8: workers8} {
		if res := runVoyageur(t, "shard-plan", "-c", ws[0].cfg, "--job", "ledgers", "--shards", fmt.Sprint(n), "-o", plans[n]); res.code != 0 {
			t.Fatalf("shard-plan %d: exit %d: %s", n, res.code, res.stderr)
		}
	}
	for i, res := range runShards(t, shards(4, workers4)) {
		if res.code != 0 {
			t.Fatalf("shard %d/4: exit %d: %s", i, res.code, res.stderr)
		}
	}
	if got := len(listObjects(t, dst, "shard/")); got != len(keys) {
		t.Fatalf("4 shards made %d replicas of %d keys", got, len(keys))
	}

	// Between the last run of 4 and the first of 8: 2 keys deleted in the
	// range of every shard of 8, 4 (over max_delete 3) in one.
	p8, err := replicator.ReadShardPlan(readFile(t, plans[8]))
	if err != nil {
		t.Fatal(err)
	}
	layout := replicator.Layout{Bounds: p8.Bounds}
	const over = 5
	byShard := map[int][]string{}
	for _, k := range slices.Sorted(slices.Values(keys)) {
		byShard[layout.ShardOf(k)] = append(byShard[layout.ShardOf(k)], k)
	}
	gone := map[string]bool{}
	for i := range 8 {
		n := 2
		if i == over {
			n = 4
		}
		if len(byShard[i]) < 2*n {
			t.Fatalf("shard %d of 8 holds %d keys", i, len(byShard[i]))
		}
		// Its first key, and keys further in.
		for j := range n {
			k := byShard[i][j*len(byShard[i])/n]
			gone[k] = true
			if err := sc.RemoveObject(ctx, src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	var writes, deletes int64
	for i, res := range runShards(t, shards(8, workers8)) {
		var s replicator.Summary
		if err := json.Unmarshal([]byte(res.stdout), &s); err != nil {
			t.Fatalf("shard %d/8: %q %s", i, res.stdout, res.stderr)
		}
		writes += workers8[i].dst.writes.Load()
		deletes += workers8[i].dst.deletes.Load()
		switch {
		case i == over:
			if res.code != 1 || s.Deleted != 0 || !strings.Contains(s.Error, "refusing to delete 4 replicas") || workers8[i].dst.deletes.Load() != 0 {
				t.Errorf("shard %d/8 with 4 deletes over max_delete 3: exit %d, %+v, %d DELETE requests", i, res.code, s, workers8[i].dst.deletes.Load())
			}
		case res.code != 0 || s.Deleted != 2 || s.Copied != 0:
			t.Errorf("shard %d/8 on a fresh journal: exit %d, %+v; want 2 deleted, nothing copied", i, res.code, s)
		}
		t.Logf("shard %d/8: skipped %d, deleted %d, %d writes, %d DELETE requests", i, s.Skipped, s.Deleted, workers8[i].dst.writes.Load(), workers8[i].dst.deletes.Load())
	}
	if writes != 0 || deletes != 7*2 {
		t.Errorf("8 shards on fresh journals wrote %d objects and sent %d deletes, want none and %d", writes, deletes, 7*2)
	}
	replicaHolds := func(want map[string]bool) {
		t.Helper()
		got := listObjects(t, dst, "shard/")
		srcObjs := listObjects(t, src, "")
		for k := range want {
			o, ok := got[k]
			if so, inSource := srcObjs[k]; !ok || inSource && o.etag != so.etag {
				t.Errorf("%s: replica %+v (present %v), source %+v", k, o, ok, so)
			}
		}
		for k := range got {
			if !want[k] {
				t.Errorf("%s: replica of a deleted key left", k)
			}
		}
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = !gone[k] || layout.ShardOf(k) == over
	}
	maps.DeleteFunc(want, func(_ string, v bool) bool { return !v })
	replicaHolds(want)

	// The refusing shard's rebuild kept its cursor: allowed more, it deletes
	// them, and copies nothing.
	w := &workers8[over]
	w.configure(t, src, dst, "shard/", "10")
	w.dst.reset()
	res := runShards(t, shards(8, workers8)[over:over+1])[0]
	if s := syncSummary(t, res); res.code != 0 || s.Deleted != 4 || s.Copied != 0 || w.dst.writes.Load() != 0 {
		t.Errorf("shard %d/8 allowed 10 deletes: exit %d, %+v, %d writes", over, res.code, s, w.dst.writes.Load())
	}
	maps.DeleteFunc(want, func(k string, _ bool) bool { return gone[k] })
	replicaHolds(want)
	if len(want) != len(keys)-len(gone) {
		t.Errorf("replica holds %d objects, want %d", len(want), len(keys)-len(gone))
	}

	// The next night: nothing to do.
	for i, res := range runShards(t, shards(8, workers8)) {
		if s := syncSummary(t, res); res.code != 0 || s.Copied != 0 || s.Deleted != 0 {
			t.Errorf("shard %d/8, next run: exit %d, %+v", i, res.code, s)
		}
	}
}

// TestShardChangeDeletesHashed: 4 → 8 shards with hashed names, keys
// deleted in between. A replica's name does not tell its key, so each
// shard of 8 on a fresh journal lists the whole source and deletes, in its
// slice of the name space, the replicas written before that listing whose
// names no key gives: together exactly those of the deleted keys, and
// nothing is written.
func TestShardChangeDeletesHashed(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	ctx := context.Background()
	sc := srcSrv.Client(t)
	var keys []string
	for p, n := range []int{300, 120, 60, 20} {
		for i := range n {
			keys = append(keys, fmt.Sprintf("q%d/%04d.csv", p, i))
		}
	}
	for _, k := range keys {
		data := []byte(strings.Repeat(k+"\n", 1+len(k)%5))
		if _, err := sc.PutObject(ctx, src.bucket, k, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	workers := func(n int) []shardWorker {
		ws := make([]shardWorker, n)
		for i := range ws {
			ws[i] = shardWorker{src: newCountingProxy(t, src.srv.URL), dst: newCountingProxy(t, dst.srv.URL)}
			s, d := src, dst
			s.url, d.url = ws[i].src.url, ws[i].dst.url
			ws[i].cfg = writeConfig(t, t.TempDir(), jobConfig{Src: s, Dst: d, DstPrefix: "shard/", Deletes: "propagate", Concurrency: 16,
				ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
		}
		return ws
	}
	run := func(n int, ws []shardWorker) []result {
		plan := filepath.Join(dir, fmt.Sprintf("plan%d.json", n))
		if res := runVoyageur(t, "shard-plan", "-c", ws[0].cfg, "--job", "ledgers", "--shards", fmt.Sprint(n), "-o", plan); res.code != 0 {
			t.Fatalf("shard-plan %d: exit %d: %s", n, res.code, res.stderr)
		}
		var argv [][]string
		for i := range n {
			argv = append(argv, []string{"sync", "--json", "-c", ws[i].cfg, "--job", "ledgers", "--shard", fmt.Sprintf("%d/%d", i, n),
				"--shard-plan", plan, "--journal", filepath.Join(dir, fmt.Sprintf("journal-%d-of-%d.db", i, n))})
		}
		return runShards(t, argv)
	}
	for i, res := range run(4, workers(4)) {
		if res.code != 0 {
			t.Fatalf("shard %d/4: exit %d: %s", i, res.code, res.stderr)
		}
	}
	if got := len(listObjects(t, dst, "shard/")); got != len(keys) {
		t.Fatalf("4 shards made %d replicas of %d keys", got, len(keys))
	}

	// A second apart from the replicas' times, as the destination's
	// Last-Modified counts whole seconds.
	time.Sleep(1100 * time.Millisecond)
	secret := readFile(t, k.nameSecret)
	gone := map[string]bool{}
	for i := 0; i < len(keys); i += 50 {
		gone["shard/"+crypto.HashedName(secret, keys[i])] = true
		if err := sc.RemoveObject(ctx, src.bucket, keys[i], minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ws := workers(8)
	var deleted, writes, deletes int64
	for i, res := range run(8, ws) {
		s := syncSummary(t, res)
		if res.code != 0 || s.Copied != 0 {
			t.Errorf("shard %d/8 on a fresh journal: exit %d, %+v\n%s", i, res.code, s, res.stderr)
		}
		deleted += s.Deleted
		writes += ws[i].dst.writes.Load()
		deletes += ws[i].dst.deletes.Load()
		t.Logf("shard %d/8: skipped %d, deleted %d, %d writes, %d DELETE requests, %d requests under .voyageur/",
			i, s.Skipped, s.Deleted, ws[i].dst.writes.Load(), ws[i].dst.deletes.Load(), ws[i].dst.reserved.Load())
	}
	if deleted != int64(len(gone)) || deletes != deleted || writes != 0 {
		t.Errorf("8 shards deleted %d replicas with %d DELETE requests and wrote %d objects; want %d, %d and none", deleted, deletes, writes, len(gone), len(gone))
	}
	got := listObjects(t, dst, "shard/")
	if len(got) != len(keys)-len(gone) {
		t.Errorf("the replica holds %d objects, want %d", len(got), len(keys)-len(gone))
	}
	for name := range got {
		if gone[name] {
			t.Errorf("%s: the replica of a deleted key is left", name)
		}
	}
}
