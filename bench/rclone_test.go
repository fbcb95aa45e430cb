package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/testproc"
	"github.com/voyageur-ca/voyageur/replicator"
)

var (
	quick = flag.Bool("quick", false, "BenchmarkVsRclone: a smoke run at an eighth of the sizes, not written to the doc")
	only  = flag.String("only", "", "BenchmarkVsRclone: run only these workloads (comma-separated names: L,S,C,Cbw,Lplain,Splain), not written to the doc")
)

// wants reports whether -only selects the workload named name.
func wants(name string) bool {
	if *only == "" {
		return true
	}
	return slices.Contains(strings.Split(*only, ","), strings.ReplaceAll(name, " ", ""))
}

const (
	// trials is how many times each tool runs a workload; the median counts.
	trials = 3
	// wanRate is the link of workload C, in bytes per second.
	wanRate = 50_000_000
)

// rclone's tuning for many small files and for a few large ones.
var (
	smallFlags = []string{"--transfers", "16", "--checkers", "16"}
	largeFlags = []string{"--transfers", "4", "--multi-thread-streams", "4"}
)

// BenchmarkVsRclone runs voyageur and rclone on the same data, alternating
// which goes first, each trial into a fresh destination bucket, and writes
// the medians, ratios and peak RSS into docs/BENCHMARKS.md. Run it with
// -benchtime 1x (make bench); it takes about ten minutes on 2 cores.
func BenchmarkVsRclone(b *testing.B) {
	r := newRig(b)
	rep := report{started: time.Now(), loadBefore: loadavg()}
	// -quick: a smoke run of the rig at an eighth of the sizes, one trial,
	// logged and not written to the doc.
	scale, n := 1, trials
	if *quick {
		scale, n = 8, 1
	}
	nSmall := int64(2000 / scale)
	writeRandom(b, filepath.Join(r.data, "L"), 4, 128<<20/scale, 1)
	writeRandom(b, filepath.Join(r.data, "S"), int(nSmall), 16<<10, 2)
	writeLedger(b, filepath.Join(r.data, "C", "ledger.csv"), 256<<20/int64(scale))
	for _, w := range []string{"L", "S", "C"} {
		// Seeding the source is itself an awscli PUT; the raw figures below
		// are measured apart, into the destination server.
		run(b, r.srcAWS, debianAWS, "--endpoint-url", r.src.URL, "s3", "cp", "--recursive", "--only-show-errors",
			filepath.Join(r.data, w), "s3://"+r.srcBucket+"/"+w+"/")
	}
	wan := startWAN(b, r.dst.Host, wanRate)

	if *only == "" {
		rep.raw = append(rep.raw,
			r.raw("L", "4 × 128 MiB random", r.dst.URL, n),
			r.raw("S", "2,000 × 16 KiB random", r.dst.URL, 1),
			r.raw("C", "256 MiB CSV, 50 MB/s link", wan.URL(), 1),
		)
	}
	add := func(w workload, dstURL string) {
		if wants(w.name) {
			rep.results = append(rep.results, r.compare(w, dstURL, n))
		}
	}
	add(workload{name: "L", what: "4 × 128 MiB random, encrypted", prefix: "L", files: 4, encrypted: true, flags: largeFlags, target: 1.00}, r.dst.URL)
	small := workload{name: "S", what: "2,000 × 16 KiB random, encrypted", prefix: "S", files: nSmall, encrypted: true, flags: smallFlags, target: 0.67}
	if wants("S") {
		sEnc, noop := r.compareWithRerun(small, workload{name: "N", what: "no-op re-run over S", target: 0.50}, r.dst.URL, n)
		rep.results = append(rep.results, sEnc, noop)
		rep.floor = r.floor(small, n)
	}
	add(workload{name: "C", what: "256 MiB CSV ledger over a 50 MB/s link, encrypted", prefix: "C", files: 1, encrypted: true, flags: largeFlags, target: 0.50}, wan.URL())
	add(workload{name: "C bw", what: "256 MiB CSV ledger, `bandwidth: 50MB` against `--bwlimit 50M`, encrypted", prefix: "C", files: 1, encrypted: true,
		transfer: "bandwidth: 50MB", flags: append(slices.Clone(largeFlags), "--bwlimit", "50M"), target: 0.50}, r.dst.URL)
	add(workload{name: "L plain", what: "4 × 128 MiB random, no encryption", prefix: "L", files: 4, flags: largeFlags}, r.dst.URL)
	add(workload{name: "S plain", what: "2,000 × 16 KiB random, no encryption", prefix: "S", files: nSmall, flags: smallFlags}, r.dst.URL)
	rep.loadAfter = loadavg()
	rep.finished = time.Now()
	rep.versions = []string{
		moduleVersion(r.rclone),
		moduleVersion(minioserver.Binary(b)),
		firstLine(debianAWS, "--version"),
	}
	md := rep.markdown()
	b.Log("\n" + md)
	for _, res := range rep.results {
		if res.target > 0 {
			b.ReportMetric(res.ratio(), strings.ReplaceAll(res.name, " ", "-")+"-ratio")
		}
	}
	if *quick || *only != "" {
		return
	}
	if err := replaceSection(docPath, "vs-rclone", md); err != nil {
		b.Fatal(err)
	}
}

// rig is two MinIO servers, the source bucket seeded with awscli, and what
// both tools share.
type rig struct {
	tb                    testing.TB
	dir, data             string
	voyageur, rclone      string
	src, dst              *minioserver.Server
	srcBucket             string
	dstClient             *minio.Client
	recipient, nameSecret string
	rclonePass            string
	srcAWS, dstAWS        []string
	runs                  int
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	r := &rig{tb: tb, dir: tb.TempDir()}
	r.data = filepath.Join(r.dir, "data")
	r.rclone = findRclone(tb)
	if _, err := os.Stat(debianAWS); err != nil {
		testproc.Unavailable(tb, "awscli not found at "+debianAWS+" (apt-get install awscli)")
	}
	r.voyageur = buildVoyageur(tb, r.dir)
	r.src, r.dst = minioserver.Start(tb), minioserver.Start(tb)
	r.srcAWS = awsEnv(tb, mkdir(tb, r.dir, "aws-src"), r.src)
	r.dstAWS = awsEnv(tb, mkdir(tb, r.dir, "aws-dst"), r.dst)
	r.dstClient = r.dst.Client(tb)
	r.srcBucket = r.src.CreateBucket(tb, false)

	// voyageur's recipient and name secret; rclone crypt gets a password
	// of the same strength, obscured as its config wants it.
	keygen := run(tb, baseEnv(), r.voyageur, "keygen", "-o", filepath.Join(r.dir, "identity.txt"))
	r.recipient = strings.TrimSpace(strings.TrimPrefix(string(keygen.errs), "Public key: "))
	r.nameSecret = filepath.Join(r.dir, "names.key")
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(r.nameSecret, secret, 0o600); err != nil {
		tb.Fatal(err)
	}
	r.rclonePass = strings.TrimSpace(string(run(tb, baseEnv(), r.rclone, "obscure", hex.EncodeToString(secret)).out))
	return r
}

func mkdir(tb testing.TB, parts ...string) string {
	tb.Helper()
	p := filepath.Join(parts...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		tb.Fatal(err)
	}
	return p
}

// endpoint is where a run writes: a server's URL (or the WAN proxy's) and
// a bucket of that server.
type endpoint struct {
	url, bucket string
}

// workload is one comparison: what to copy and how each tool is set up.
type workload struct {
	name, what string
	prefix     string // source prefix, without the slash
	files      int64
	encrypted  bool
	flags      []string // rclone's tuning
	transfer   string   // voyageur's transfer settings, YAML flow mapping body
	target     float64  // voyageur / rclone ratio to meet; 0 = none
}

// result is the samples of one workload.
type result struct {
	workload
	voy, rcl []sample
	// wire is the bytes voyageur wrote to the destination (its summary).
	wire int64
}

// compare runs the workload trials times per tool, alternating which tool
// goes first, each run into a fresh bucket at dstURL (a server or the WAN).
func (r *rig) compare(w workload, dstURL string, n int) result {
	res, _ := r.compareWithRerun(w, workload{}, dstURL, n)
	return res
}

// compareWithRerun is compare; when rerun is named, each tool then runs
// again on the same destination, with nothing changed, as that workload.
func (r *rig) compareWithRerun(w, rerun workload, dstURL string, n int) (result, result) {
	first, again := result{workload: w}, result{workload: rerun}
	for i := range n {
		tools := []string{"voyageur", "rclone"}
		if i%2 == 1 {
			tools[0], tools[1] = tools[1], tools[0]
		}
		for _, tool := range tools {
			dst := endpoint{url: dstURL, bucket: r.dst.CreateBucket(r.tb, false)}
			journal := filepath.Join(mkdir(r.tb, r.dir, fmt.Sprintf("run-%d", r.next())), "journal.db")
			if tool == "voyageur" {
				s, sum := r.voyageurSync(w, dst, journal, w.files)
				first.voy, first.wire = append(first.voy, s), sum.BytesWritten
				if rerun.name != "" {
					s, _ = r.voyageurSync(w, dst, journal, 0)
					again.voy = append(again.voy, s)
				}
			} else {
				first.rcl = append(first.rcl, r.rcloneCopy(w, dst))
				if rerun.name != "" {
					again.rcl = append(again.rcl, r.rcloneCopy(w, dst))
				}
			}
			r.removeBucket(dst.bucket)
			os.RemoveAll(filepath.Dir(journal))
		}
		r.tb.Logf("%s trial %d: voyageur %s, rclone %s", w.name, i+1, first.voy[i].wall, first.rcl[i].wall)
	}
	return first, again
}

func (r *rig) next() int {
	r.runs++
	return r.runs
}

// runMeasured runs a tool as run does and adds the CPU the two MinIO
// servers spent meanwhile.
func (r *rig) runMeasured(env []string, bin string, args ...string) sample {
	r.tb.Helper()
	servers := func() time.Duration { return processCPU(r.tb, r.src.PID()) + processCPU(r.tb, r.dst.PID()) }
	before := servers()
	s := run(r.tb, env, bin, args...)
	s.servers = servers() - before
	return s
}

// voyageurSync runs `voyageur sync` of the workload into dst and checks
// that it copied wantCopied objects.
func (r *rig) voyageurSync(w workload, dst endpoint, journal string, wantCopied int64) (sample, replicator.Summary) {
	r.tb.Helper()
	enc := ""
	if w.encrypted {
		enc = fmt.Sprintf("    encryption: {recipients: [%q], compression: zstd, names: hashed, name_secret_file: %q}\n", r.recipient, r.nameSecret)
	}
	if w.transfer != "" {
		enc += "    transfer: {" + w.transfer + "}\n"
	}
	cfg := fmt.Sprintf(`journal: %s
endpoints:
  source: {type: aws, url: %q, region: us-east-1, path_style: true, access_key: %q, secret_key: %q}
  canada: {type: minio, url: %q, access_key: %q, secret_key: %q}
jobs:
  - name: bench
    source: source:%s/%s/
    destination: canada:%s/
%s`, journal, r.src.URL, r.src.AccessKey, r.src.SecretKey, dst.url, r.dst.AccessKey, r.dst.SecretKey, r.srcBucket, w.prefix, dst.bucket, enc)
	path := filepath.Join(filepath.Dir(journal), "voyageur.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		r.tb.Fatal(err)
	}
	s := r.runMeasured(baseEnv(), r.voyageur, "sync", "--json", "-c", path)
	sum := parseSummary(r.tb, s.out)
	if sum.Copied != wantCopied {
		r.tb.Fatalf("voyageur %s: copied %d objects, want %d", w.name, sum.Copied, wantCopied)
	}
	return s, sum
}

// rcloneCopy runs `rclone copy` of the workload into dst, through a crypt
// remote when the workload is encrypted (standard name encryption).
func (r *rig) rcloneCopy(w workload, dst endpoint) sample {
	r.tb.Helper()
	conf := filepath.Join(r.dir, "rclone.conf") // empty: remotes come from the environment
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		r.tb.Fatal(err)
	}
	env := append(baseEnv(), "RCLONE_CONFIG="+conf)
	env = append(env, rcloneS3("SRC", r.src.URL, r.src)...)
	env = append(env, rcloneS3("DST", dst.url, r.dst)...)
	target := "dst:" + dst.bucket
	if w.encrypted {
		env = append(env,
			"RCLONE_CONFIG_DSTC_TYPE=crypt",
			"RCLONE_CONFIG_DSTC_REMOTE=dst:"+dst.bucket,
			"RCLONE_CONFIG_DSTC_PASSWORD="+r.rclonePass,
			"RCLONE_CONFIG_DSTC_FILENAME_ENCRYPTION=standard",
			"RCLONE_CONFIG_DSTC_DIRECTORY_NAME_ENCRYPTION=true",
		)
		target = "dstc:"
	}
	args := append([]string{"copy", "src:" + r.srcBucket + "/" + w.prefix, target, "-q"}, w.flags...)
	return r.runMeasured(env, r.rclone, args...)
}

func rcloneS3(name, url string, srv *minioserver.Server) []string {
	p := "RCLONE_CONFIG_" + name + "_"
	return []string{
		p + "TYPE=s3", p + "PROVIDER=Minio", p + "ENDPOINT=" + url, p + "REGION=us-east-1",
		p + "ACCESS_KEY_ID=" + srv.AccessKey, p + "SECRET_ACCESS_KEY=" + srv.SecretKey, p + "ENV_AUTH=false",
	}
}

// rawResult is awscli moving the plain bytes of a workload: the limit of
// the servers and the machine, for context.
type rawResult struct {
	name, what string
	put, get   []sample
}

// raw times awscli uploading the workload's files into a fresh bucket at
// dstURL and downloading them from the source, n times each.
func (r *rig) raw(name, what, dstURL string, n int) rawResult {
	res := rawResult{name: name, what: what}
	for range n {
		bucket := r.dst.CreateBucket(r.tb, false)
		res.put = append(res.put, run(r.tb, r.dstAWS, debianAWS, "--endpoint-url", dstURL, "s3", "cp", "--recursive", "--only-show-errors",
			filepath.Join(r.data, name), "s3://"+bucket+"/"))
		r.removeBucket(bucket)
		into := filepath.Join(r.dir, "download")
		res.get = append(res.get, run(r.tb, r.srcAWS, debianAWS, "--endpoint-url", r.src.URL, "s3", "cp", "--recursive", "--only-show-errors",
			"s3://"+r.srcBucket+"/"+name+"/", into))
		os.RemoveAll(into)
	}
	return res
}

// removeBucket deletes a destination bucket and its objects, so the disk
// holds one run's data at a time.
func (r *rig) removeBucket(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.dstClient.RemoveBucketWithOptions(ctx, name, minio.RemoveBucketOptions{ForceDelete: true}); err != nil {
		r.tb.Fatalf("remove bucket %s: %v", name, err)
	}
}
