package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/testproc"
)

const (
	// serveTarget is the bound on serve / direct for the 1 GiB GET.
	serveTarget = 1.25
	// servePartSize is the replica's part size: voyageur's default.
	servePartSize = 8 << 20
	serveAccess   = "bench-serve"
	serveSecret   = "bench-serve-secret-key"
)

// BenchmarkServeVsDirect times one streaming GET (curl, a presigned URL,
// body to /dev/null) of a 1 GiB object replicated encrypted by `voyageur
// sync` to MinIO: through `voyageur serve` (decrypted on the fly) against
// the same GET of its replica straight from MinIO, alternating which goes
// first; then the replica bytes serve fetches for a 1 MiB ranged GET. The
// served bytes are checked once by SHA-256 against the source. The table
// goes into docs/BENCHMARKS.md (-quick: 128 MiB, one trial, not written).
func BenchmarkServeVsDirect(b *testing.B) {
	curl := testproc.NeedTool(b, "curl")
	if _, err := os.Stat(debianAWS); err != nil {
		testproc.Unavailable(b, "awscli not found at "+debianAWS+" (apt-get install awscli)")
	}
	started, loadBefore := time.Now(), loadavg()
	size, n := int64(1<<30), trials
	if *quick {
		size, n = size/8, 1
	}
	dir := b.TempDir()
	bin := buildVoyageur(b, dir)
	src, dst := minioserver.Start(b), minioserver.Start(b)
	srcBucket, dstBucket := src.CreateBucket(b, false), dst.CreateBucket(b, false)
	writeRandom(b, filepath.Join(dir, "data"), 1, int(size), 7)
	file := filepath.Join(dir, "data", "00000.bin")
	want := fileSHA256(b, file)
	run(b, awsEnv(b, mkdir(b, dir, "aws-src"), src), debianAWS, "--endpoint-url", src.URL, "s3", "cp", "--only-show-errors",
		file, "s3://"+srcBucket+"/big/object.bin")

	keygen := run(b, baseEnv(), bin, "keygen", "-o", filepath.Join(dir, "identity.txt"))
	recipient := strings.TrimSpace(strings.TrimPrefix(string(keygen.errs), "Public key: "))
	port, err := testproc.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "voyageur.yaml")
	conf := fmt.Sprintf(`journal: %s
endpoints:
  source: {type: aws, url: %q, region: us-east-1, path_style: true, access_key: %q, secret_key: %q}
  canada: {type: minio, url: %q, access_key: %q, secret_key: %q}
jobs:
  - name: bench
    source: source:%s/big/
    destination: canada:%s/
    encryption: {recipients: [%q], compression: zstd, names: plain}
serve:
  listen: %s
  access_key: %s
  secret_key: %s
  cache: %s
`, filepath.Join(dir, "journal.db"), src.URL, src.AccessKey, src.SecretKey, dst.URL, dst.AccessKey, dst.SecretKey,
		srcBucket, dstBucket, recipient, listen, serveAccess, serveSecret, filepath.Join(dir, "serve-cache.db"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	if sum := parseSummary(b, run(b, baseEnv(), bin, "sync", "--json", "-c", cfg).out); sum.Copied != 1 {
		b.Fatalf("sync copied %d objects, want 1", sum.Copied)
	}
	replicaKey, replicaSize := onlyObject(b, dst.Client(b), dstBucket)

	logPath := filepath.Join(dir, "serve.log")
	serveCmd := exec.Command(bin, "serve", "-c", cfg, "--identity", filepath.Join(dir, "identity.txt"))
	proc, err := testproc.Start(serveCmd, logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer proc.Stop(30 * time.Second)
	serveURL := "http://" + listen
	if err := proc.WaitHealthy(serveURL+"/healthz", 5*time.Minute); err != nil {
		b.Fatalf("serve: %v\n%s", err, testproc.Tail(logPath, 4000))
	}
	served := presign(b, listen, serveAccess, serveSecret, "bench", "object.bin")
	direct := presign(b, dst.Host, dst.AccessKey, dst.SecretKey, dstBucket, replicaKey)

	// The ranged read first, on a replica serve has not opened yet: the
	// figure includes the header and tail reads of opening it.
	off := size / 2
	before := replicaFetched(b, serveURL)
	get(b, curl, served, size, fmt.Sprintf("%d-%d", off, off+1<<20-1))
	rangedFetched := replicaFetched(b, serveURL) - before
	before = replicaFetched(b, serveURL)
	get(b, curl, served, size, fmt.Sprintf("%d-%d", off/2, off/2+1<<20-1))
	rangedOpened := replicaFetched(b, serveURL) - before

	if out := os.Getenv(servePerfEnv); out != "" {
		defer recordPerf(b, serveCmd.Process.Pid, out)()
	}
	var viaServe, viaMinIO []sample
	// CPU time per GET of each process on the path: the two cores are
	// shared, so their sum is what the wall times come out of.
	var serveCPU, minioServeCPU, minioDirectCPU []time.Duration
	minioPID := dst.PID()
	for i := range n {
		timed := func(through bool) {
			serve0, minio0 := processCPU(b, serveCmd.Process.Pid), processCPU(b, minioPID)
			if through {
				viaServe = append(viaServe, get(b, curl, served, size, ""))
				serveCPU = append(serveCPU, processCPU(b, serveCmd.Process.Pid)-serve0)
				minioServeCPU = append(minioServeCPU, processCPU(b, minioPID)-minio0)
			} else {
				viaMinIO = append(viaMinIO, get(b, curl, direct, replicaSize, ""))
				minioDirectCPU = append(minioDirectCPU, processCPU(b, minioPID)-minio0)
			}
		}
		timed(i%2 == 0)
		timed(i%2 == 1)
		b.Logf("trial %d: serve %s (CPU: serve %s, MinIO %s, curl %s), direct %s (CPU: MinIO %s, curl %s)", i+1,
			viaServe[i].wall, serveCPU[i], minioServeCPU[i], viaServe[i].cpu, viaMinIO[i].wall, minioDirectCPU[i], viaMinIO[i].cpu)
	}
	if got := urlSHA256(b, served); got != want {
		b.Fatalf("serve returned bytes with SHA-256 %s, the source's is %s", got, want)
	}

	ratio := median(viaServe).Seconds() / median(viaMinIO).Seconds()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "Run %s, %s on %s.\n\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second), machine())
	fmt.Fprintf(&md, "Load average (1, 5, 15 min) before: %s; after: %s. Tools: %s; %s.\n\n", loadBefore, loadavg(),
		strings.Join(strings.Fields(firstLine(curl, "--version"))[:2], " "), moduleVersion(minioserver.Binary(b)))
	md.WriteString("| read | through serve (median) | direct from MinIO (median) | serve / direct | target | runs serve / direct (s) |\n")
	md.WriteString("|---|---:|---:|---:|---|---|\n")
	fmt.Fprintf(&md, "| %s random object, encrypted (replica %s), one streaming GET | %s | %s | %.2f | ≤ %.2f: %s | %s / %s |\n",
		mib(size), mib(replicaSize), secs(median(viaServe)), secs(median(viaMinIO)), ratio, serveTarget, verdict(ratio <= serveTarget),
		all(viaServe), all(viaMinIO))
	cpuRuns := strings.Join(mapSlice(serveCPU, func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }), ", ")
	serveCPUMedian := medianDuration(serveCPU)
	fmt.Fprintf(&md, "\nCPU time of the serve process per GET through it (user + system, median): %.2f s; runs %s s.\n",
		serveCPUMedian.Seconds(), cpuRuns)
	fmt.Fprintf(&md, "CPU time per GET of the other processes (medians): direct, MinIO %.2f s and curl %.2f s; through serve, MinIO %.2f s and curl %.2f s.\n",
		medianDuration(minioDirectCPU).Seconds(), medianDuration(mapCPU(viaMinIO)).Seconds(),
		medianDuration(minioServeCPU).Seconds(), medianDuration(mapCPU(viaServe)).Seconds())
	fmt.Fprintf(&md, "\nReplica bytes fetched for a 1 MiB ranged GET (part size %s): %.2f MiB on a replica not yet opened "+
		"(its header and last chunks included), %.2f MiB once opened; target ≤ 2 × part size (%s): %s.\n",
		mib(servePartSize), float64(rangedFetched)/(1<<20), float64(rangedOpened)/(1<<20), mib(2*servePartSize),
		verdict(rangedFetched <= 2*servePartSize))
	b.Log("\n" + md.String())
	b.ReportMetric(ratio, "serve/direct")
	b.ReportMetric(serveCPUMedian.Seconds(), "serve-cpu-s/GET")
	b.ReportMetric(medianDuration(minioDirectCPU).Seconds(), "minio-direct-cpu-s/GET")
	b.ReportMetric(float64(rangedFetched), "ranged-fetched-bytes")
	if *quick {
		return
	}
	if err := replaceSection(docPath, "serve", md.String()); err != nil {
		b.Fatal(err)
	}
}

// servePerfEnv, set to a file path, records the serve process with
// `perf record` during the timed GETs; the flat report by symbol goes to
// FILE.txt (made while the binary, in a temporary directory, exists).
const servePerfEnv = "VOYAGEUR_BENCH_SERVE_PERF"

// recordPerf starts `perf record` on a process and returns the function
// that stops it.
func recordPerf(tb testing.TB, pid int, out string) func() {
	tb.Helper()
	perf := testproc.NeedTool(tb, "perf")
	cmd := exec.Command(perf, "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", out, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		report := exec.Command(perf, "report", "-i", out, "--no-children", "--sort", "dso,symbol", "--stdio", "-g", "none")
		txt, err := report.Output()
		if err != nil {
			tb.Errorf("perf report: %v", err)
		}
		if err := os.WriteFile(out+".txt", txt, 0o644); err != nil {
			tb.Error(err)
		}
	}
}

// processCPU is a process's user and system CPU time so far, from
// /proc/PID/stat (in clock ticks of 10 ms).
func processCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// medianDuration is the median of d (sorted in a copy).
func medianDuration(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

// mapCPU is the CPU time of each sample.
func mapCPU(s []sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = v.cpu
	}
	return out
}

func mapSlice[T any](s []T, f func(T) string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// onlyObject returns the key and size of the one object in a bucket.
func onlyObject(tb testing.TB, c *minio.Client, bucket string) (string, int64) {
	tb.Helper()
	var objs []minio.ObjectInfo
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			tb.Fatal(o.Err)
		}
		objs = append(objs, o)
	}
	if len(objs) != 1 {
		tb.Fatalf("destination holds %d objects, want the one replica", len(objs))
	}
	return objs[0].Key, objs[0].Size
}

// presign returns a presigned GET URL of bucket/key at host.
func presign(tb testing.TB, host, access, secret, bucket, key string) string {
	tb.Helper()
	c, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		tb.Fatal(err)
	}
	u, err := c.PresignedGetObject(context.Background(), bucket, key, time.Hour, url.Values{})
	if err != nil {
		tb.Fatal(err)
	}
	return u.String()
}

// get runs one curl GET of u (a byte range when rng is set) into
// /dev/null and checks the byte count: a whole object must be size bytes.
func get(tb testing.TB, curl, u string, size int64, rng string) sample {
	tb.Helper()
	args := []string{"-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}"}
	want := size
	if rng != "" {
		args = append(args, "-r", rng)
		want = 1 << 20
	}
	s := run(tb, baseEnv(), curl, append(args, u)...)
	if got, err := strconv.ParseInt(strings.TrimSpace(string(s.out)), 10, 64); err != nil || got != want {
		tb.Fatalf("curl GET (range %q) read %q bytes, want %d", rng, s.out, want)
	}
	return s
}

var fetchedMetric = regexp.MustCompile(`(?m)^voyageur_serve_replica_bytes_fetched_total (\S+)$`)

// replicaFetched reads serve's count of replica bytes fetched.
func replicaFetched(tb testing.TB, serveURL string) int64 {
	tb.Helper()
	resp, err := http.Get(serveURL + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	m := fetchedMetric.FindSubmatch(body)
	if m == nil {
		tb.Fatalf("no voyageur_serve_replica_bytes_fetched_total in /metrics")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		tb.Fatal(err)
	}
	return int64(v)
}

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// urlSHA256 GETs u and returns the SHA-256 of the body.
func urlSHA256(tb testing.TB, u string) string {
	tb.Helper()
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET: %s", resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		tb.Fatalf("GET: %v", err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
