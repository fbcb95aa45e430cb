package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// scaleKeys is the largest listing of BenchmarkScale. Keys are
// k/0000000..k/0999999, so the prefixes k/000, k/00 and k/0 select the
// first 10,000, 100,000 and 1,000,000 of them out of one warm journal.
const scaleKeys = 1_000_000

// scaleChildEnv, set to a journal path, makes the test binary run one no-op
// scan and exit (TestMain), so its peak RSS is the scan's alone.
const scaleChildEnv = "VOYAGEUR_BENCH_SCALE_CHILD"

// synthetic is a source bucket of n one-byte objects under k/, generated
// in key order as they are listed, never stored. Only the calls a sync of
// small objects makes are implemented.
type synthetic struct {
	backends.Bucket
	n int
}

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func scaleKey(i int) string { return fmt.Sprintf("k/%07d", i) }

func (s synthetic) Name() string { return "synthetic" }

func (s synthetic) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		// Keys are in order: a listing that starts after a key skips to it.
		from := sort.Search(s.n, func(i int) bool { return scaleKey(i) > opts.StartAfter })
		for i := from; i < s.n; i++ {
			key := scaleKey(i)
			if !strings.HasPrefix(key, opts.Prefix) {
				continue
			}
			if !yield(backends.ObjectInfo{Key: key, Size: 1, ETag: strconv.Itoa(i), LastModified: modTime}, nil) {
				return
			}
		}
	}
}

func (s synthetic) Get(ctx context.Context, key string, opts backends.GetOptions) (io.ReadCloser, backends.ObjectInfo, error) {
	i, err := strconv.Atoi(strings.TrimPrefix(key, "k/"))
	if err != nil {
		return nil, backends.ObjectInfo{}, err
	}
	return io.NopCloser(bytes.NewReader([]byte{byte(i)})),
		backends.ObjectInfo{Key: key, Size: 1, ETag: strconv.Itoa(i), LastModified: modTime}, nil
}

// sink is a destination that accepts every PUT and keeps nothing.
type sink struct{ backends.Bucket }

func (sink) Name() string { return "sink" }

func (sink) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts backends.PutOptions) (backends.ObjectInfo, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return backends.ObjectInfo{}, err
	}
	return backends.ObjectInfo{Key: key, Size: size, ETag: "sunk"}, nil
}

// List finds one object of voyageur's own (under the reserved prefix): a
// run on a warm journal sees a destination that holds something (an empty
// one is refused, ErrDestinationEmpty), and the index is never rebuilt
// from the sink (a rebuild looks past the reserved prefix).
func (sink) List(ctx context.Context, opts backends.ListOptions) iter.Seq2[backends.ObjectInfo, error] {
	return func(yield func(backends.ObjectInfo, error) bool) {
		if key := opts.Prefix + replicator.ReservedPrefix + "sink"; key > opts.StartAfter {
			yield(backends.ObjectInfo{Key: key}, nil)
		}
	}
}

func (sink) ListMultipartUploads(ctx context.Context, prefix string) iter.Seq2[backends.Upload, error] {
	return func(func(backends.Upload, error) bool) {}
}

// scaleJob is the job of BenchmarkScale: encrypted, zstd, hashed names,
// the workloads' defaults.
func scaleJob(prefix string, secret []byte) (replicator.Job, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return replicator.Job{}, err
	}
	return replicator.Job{
		Name: "scale", Source: synthetic{n: scaleKeys}, SourcePrefix: prefix, Dest: sink{},
		// The scans read narrower prefixes of the journal the warm-up
		// built: one route for all of them.
		Route: "synthetic:k -> sink",
		Encryption: &replicator.Encryption{
			Options:     crypto.Options{Recipients: []age.Recipient{id.Recipient()}, Compression: crypto.Compression{Zstd: true}},
			HashedNames: true, NameSecret: secret,
		},
	}, nil
}

// nameSecret is fixed: the warm journal's destination keys must be the
// ones the no-op scans compute.
var nameSecret = bytes.Repeat([]byte{7}, 32)

// scaleResult is what a child reports about its no-op scan.
type scaleResult struct {
	Keys     int64   `json:"keys"`
	Seconds  float64 `json:"seconds"`
	GoSys    uint64  `json:"go_sys"`    // bytes the Go runtime got from the OS
	RssFile  int64   `json:"rss_file"`  // resident file pages at the end (the journal's map)
	RssAnon  int64   `json:"rss_anon"`  // resident anonymous pages at the end
	JournalB int64   `json:"journal_b"` // journal file size
}

// scaleChild runs the no-op scan of prefix over the warm journal at path.
func scaleChild(path, prefix string) error {
	j, err := journal.Open(path, time.Second)
	if err != nil {
		return err
	}
	defer j.Close()
	job, err := scaleJob(prefix, nameSecret)
	if err != nil {
		return err
	}
	start := time.Now()
	sum, err := engine.Sync(context.Background(), j, job, engine.Options{})
	if err != nil {
		return err
	}
	if sum.Copied != 0 || sum.Failed != 0 {
		return fmt.Errorf("no-op scan of %s copied %d, failed %d", prefix, sum.Copied, sum.Failed)
	}
	res := scaleResult{Keys: sum.Skipped, Seconds: time.Since(start).Seconds()}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.GoSys = ms.Sys
	res.RssFile, res.RssAnon = procStatus("RssFile:"), procStatus("RssAnon:")
	if fi, err := os.Stat(path); err == nil {
		res.JournalB = fi.Size()
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// procStatus reads one kB field of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkScale builds a warm journal of a million keys (one sync of a
// synthetic listing into a sink), then times no-op scans of 10,000, 100,000
// and 1,000,000 of its keys, each in a child process whose peak RSS is
// measured, and writes the table into docs/BENCHMARKS.md. -quick stops at
// 100,000 keys and writes nothing.
func BenchmarkScale(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "journal.db")
	n, prefixes := scaleKeys, []string{"k/000", "k/00", "k/0"}
	if *quick {
		n, prefixes = scaleKeys/10, prefixes[:2]
	}
	j, err := journal.Open(path, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	job, err := scaleJob("k/", nameSecret)
	if err != nil {
		b.Fatal(err)
	}
	job.Source = synthetic{n: n}
	start := time.Now()
	sum, err := engine.Sync(context.Background(), j, job, engine.Options{})
	warm := time.Since(start)
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil || sum.Copied != int64(n) {
		b.Fatalf("warm journal: %+v, %v", sum, err)
	}
	b.Logf("warm journal: %d keys copied in %s (%.0f objects/s)", n, warm.Round(time.Millisecond), float64(n)/warm.Seconds())

	var rows []string
	for _, prefix := range prefixes {
		env := append(os.Environ(), scaleChildEnv+"="+path, scaleChildEnv+"_PREFIX="+prefix)
		s := run(b, env, os.Args[0]) // through the launcher, like the tools
		var res scaleResult
		if err := json.Unmarshal(s.out, &res); err != nil {
			b.Fatalf("scale child printed %q: %v", s.out, err)
		}
		b.Logf("no-op scan of %d keys: %.2f s, peak RSS %s, Go runtime %s, journal pages resident %s, journal %s",
			res.Keys, res.Seconds, mib(s.rss), mib(int64(res.GoSys)), mib(res.RssFile), mib(res.JournalB))
		rows = append(rows, fmt.Sprintf("| %d | %.2f s | %s | %s | %s | %s |", res.Keys, res.Seconds, mib(s.rss), mib(int64(res.GoSys)), mib(res.RssFile), mib(res.JournalB)))
		b.ReportMetric(res.Seconds, fmt.Sprintf("s/scan-%d", res.Keys))
		b.ReportMetric(float64(s.rss)/(1<<20), fmt.Sprintf("MiB-RSS/scan-%d", res.Keys))
	}
	if *quick {
		return
	}
	md := fmt.Sprintf("Run %s on %s; load average before the scans: %s. Warm journal: %d keys copied into a sink in %s (%.0f objects/s, encrypted).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), loadavg(), n, warm.Round(time.Second), float64(n)/warm.Seconds()) +
		"| keys | no-op scan | peak RSS | Go runtime (from the OS) | journal pages resident | journal file |\n|---:|---:|---:|---:|---:|---:|\n" +
		strings.Join(rows, "\n") + "\n"
	if err := replaceSection(docPath, "scale", md); err != nil {
		b.Fatal(err)
	}
}
