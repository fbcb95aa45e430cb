package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// drillJob is the part of a drill report's job the tests read.
type drillJob struct {
	Job      string   `json:"job"`
	Passed   bool     `json:"passed"`
	Problems []string `json:"problems"`
	Sampled  int      `json:"sampled"`
	Verified int      `json:"verified"`
	Failed   []struct {
		Key, Reason string
	} `json:"failed"`
	VerifiedAgainst       map[string]int `json:"verified_against"`
	ReplicaObjects        int64          `json:"replica_objects"`
	ReplicaBytes          int64          `json:"replica_bytes"`
	SampledBytes          int64          `json:"sampled_bytes"`
	CatalogSeconds        float64        `json:"catalog_seconds"`
	FirstByteSeconds      float64        `json:"first_byte_seconds"`
	RestoreBytesPerSecond float64        `json:"restore_bytes_per_second"`
	RTOSecondsEstimate    float64        `json:"rto_seconds_estimate"`
	RTOBasis              string         `json:"rto_basis"`
	ServeVerified         int            `json:"serve_verified"`
	ServeSeconds          float64        `json:"serve_seconds"`
	ServeBytesPerSecond   float64        `json:"serve_bytes_per_second"`
	ServeNote             string         `json:"serve_note"`
	RPOSeconds            *float64       `json:"rpo_seconds"`
	RPOBasis              string         `json:"rpo_basis"`
	LagHistory            []struct {
		Seconds float64 `json:"seconds"`
	} `json:"lag_history"`
	LagHistogram []struct {
		LESeconds *float64 `json:"le_seconds"`
		Count     int      `json:"count"`
	} `json:"lag_histogram"`
	LagObjects  int `json:"lag_objects"`
	Destination struct {
		Provider string `json:"provider"`
		Region   string `json:"region"`
		InCanada *bool  `json:"in_canada"`
	} `json:"destination"`
	Recipients []string `json:"recipients"`
	Custody    struct {
		DrillIdentity  []string `json:"drill_identity_matches"`
		HostIdentities []struct {
			Path    string   `json:"path"`
			Matches []string `json:"matches"`
		} `json:"host_identities"`
		Retention string `json:"retention"`
	} `json:"key_custody"`
	Objectives *struct {
		RPOMet *bool `json:"rpo_met"`
		RTOMet *bool `json:"rto_met"`
	} `json:"objectives"`
	Started         time.Time `json:"started"`
	DurationSeconds float64   `json:"duration_seconds"`
}

type drillReport struct {
	Passed          bool       `json:"passed"`
	Started         time.Time  `json:"started"`
	DurationSeconds float64    `json:"duration_seconds"`
	Jobs            []drillJob `json:"jobs"`
}

// runDrill runs drill --json and insists on the exit code.
func runDrill(t testing.TB, wantCode int, args ...string) (drillReport, result) {
	t.Helper()
	res := runVoyageur(t, append([]string{"drill", "--json"}, args...)...)
	if res.code != wantCode {
		t.Fatalf("drill %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, res.code, wantCode, res.stdout, res.stderr)
	}
	var r drillReport
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("drill --json printed %q: %v\nstderr: %s", res.stdout, err, res.stderr)
	}
	if len(r.Jobs) != 1 {
		t.Fatalf("drill: %d jobs in the report, want 1: %s", len(r.Jobs), res.stdout)
	}
	return r, res
}

// drillSetup is a replicated, encrypted job whose destination is declared
// in Toronto, with a second copy of its identity beside the config.
type drillSetup struct {
	src, dst side
	dir, cfg string
	k        keys
	state    map[string]srcObject
	jobLines string
}

func newDrillSetup(t *testing.T) *drillSetup {
	srcSrv, dstSrv := startServer(t), startServer(t)
	s := &drillSetup{
		src:   side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"},
		dst:   side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio", extra: `location: {country: CA, region: "Toronto TR2"}`},
		dir:   t.TempDir(),
		state: map[string]srcObject{},
	}
	s.k = newKeys(t, s.dir, false)
	for i := range 15 {
		s.state[fmt.Sprintf("a/%02d.csv", i)] = srcObject{data: []byte(strings.Repeat(fmt.Sprintf("row %d\n", i), 200+i))}
	}
	s.state["big/archive.bin"] = srcObject{data: randomData(6*mib, 3)}
	for k, o := range s.state {
		putSource(t, s.src, k, o)
	}
	s.jobLines = s.k.encryptionYAML("hashed", "zstd") + "    residency: ca\n"
	s.cfg = s.config(t, s.dir, "    objectives: {rpo: 1h, rto: 1h}\n")
	syncJSON(t, 0, "-c", s.cfg)
	return s
}

// config writes a config with more job lines into dir (each dir holds
// one); every config shares the setup's journal.
func (s *drillSetup) config(t *testing.T, dir, more string) string {
	return writeConfig(t, dir, jobConfig{Journal: filepath.Join(s.dir, "journal.db"), Src: s.src, Dst: s.dst, ExtraJobLines: s.jobLines + more})
}

// TestDrill: a drill of a healthy replica passes (exit 0) with plausible
// figures, writes its JSON and HTML report, stores it encrypted at the
// destination and lists it with --history; the page renders in headless
// Chromium; then a missed objective and a tampered replica fail it (exit
// 1, the key named). No output, report or stored copy shows a secret.
func TestDrill(t *testing.T) {
	s := newDrillSetup(t)
	// A second copy of the identity, left beside the config: the drill must
	// find it (a replicating host should hold none) and name only its path.
	stray := filepath.Join(s.dir, "old-identity.txt")
	if err := os.WriteFile(stray, readFile(t, s.k.identity), 0o600); err != nil {
		t.Fatal(err)
	}
	reports := filepath.Join(t.TempDir(), "drills")

	r, res := runDrill(t, 0, "-c", s.cfg, "--identity", s.k.identity, "--sample", "100", "--report", reports)
	j := r.Jobs[0]
	t.Logf("drill: %+v", j)
	if !r.Passed || !j.Passed || len(j.Problems) != 0 || len(j.Failed) != 0 {
		t.Errorf("healthy replica: passed %v/%v, problems %v, failed %v", r.Passed, j.Passed, j.Problems, j.Failed)
	}
	want := int64(0)
	for _, o := range s.state {
		want += int64(len(o.data))
	}
	if j.Job != "ledgers" || j.Sampled != len(s.state) || j.Verified != j.Sampled || j.VerifiedAgainst["source"] != j.Sampled {
		t.Errorf("sampled %d, verified %d (%v), want %d verified against the source", j.Sampled, j.Verified, j.VerifiedAgainst, len(s.state))
	}
	// The failover path: every verified object read again through an
	// in-process voyageur serve, with the same SHA-256.
	if j.ServeVerified != j.Verified || j.ServeNote != "" || j.ServeSeconds <= 0 || j.ServeBytesPerSecond <= 0 {
		t.Errorf("through serve: %d of %d verified objects, %v s, %v B/s, note %q", j.ServeVerified, j.Verified, j.ServeSeconds, j.ServeBytesPerSecond, j.ServeNote)
	}
	if j.ReplicaObjects != int64(len(s.state)) || j.ReplicaBytes != want || j.SampledBytes != want {
		t.Errorf("replica %d objects %d bytes, sampled %d bytes; want %d objects %d bytes", j.ReplicaObjects, j.ReplicaBytes, j.SampledBytes, len(s.state), want)
	}
	// The estimate is the catalog time plus the whole replica at the
	// measured throughput, as its basis says.
	est := j.CatalogSeconds + float64(j.ReplicaBytes)/j.RestoreBytesPerSecond
	if j.RestoreBytesPerSecond <= 0 || j.FirstByteSeconds <= 0 || j.CatalogSeconds <= 0 || math.Abs(j.RTOSecondsEstimate-est) > 0.002+est*1e-6 {
		t.Errorf("RTO: estimate %v, catalog %v + %d bytes at %v B/s = %v; first byte %v", j.RTOSecondsEstimate, j.CatalogSeconds, j.ReplicaBytes, j.RestoreBytesPerSecond, est, j.FirstByteSeconds)
	}
	if !strings.Contains(j.RTOBasis, "restore_bytes_per_second") {
		t.Errorf("RTO basis: %q", j.RTOBasis)
	}
	if j.RPOSeconds == nil || *j.RPOSeconds != 0 || !strings.Contains(j.RPOBasis, "journal queue") || !strings.Contains(j.RPOBasis, "source listing") {
		t.Errorf("RPO right after a sync: %v (%s), want 0 from the journal and the source", j.RPOSeconds, j.RPOBasis)
	}
	if d := j.Destination; d.Provider != "self-hosted" || d.Region != "Toronto TR2" || d.InCanada == nil || !*d.InCanada {
		t.Errorf("destination %+v (in_canada %v), want the configured location in Canada", d, d.InCanada)
	}
	fp := sha256.Sum256([]byte(s.k.recipient))
	fingerprint := "sha256:" + hex.EncodeToString(fp[:])
	if !slices.Equal(j.Recipients, []string{fingerprint}) || !slices.Equal(j.Custody.DrillIdentity, []string{fingerprint}) {
		t.Errorf("recipients %v, drill identity matches %v; want [%s]", j.Recipients, j.Custody.DrillIdentity, fingerprint)
	}
	if h := j.Custody.HostIdentities; len(h) != 1 || h[0].Path != stray || !slices.Equal(h[0].Matches, []string{fingerprint}) {
		t.Errorf("host identities %+v, want %s matching the recipient", h, stray)
	}
	if j.Custody.Retention != "none" || j.Objectives == nil || j.Objectives.RPOMet == nil || !*j.Objectives.RPOMet || !*j.Objectives.RTOMet {
		t.Errorf("retention %q, objectives %+v", j.Custody.Retention, j.Objectives)
	}
	if j.Started.IsZero() || j.DurationSeconds <= 0 || r.Started.IsZero() {
		t.Errorf("started %v, duration %v", j.Started, j.DurationSeconds)
	}

	// The report directory: the same report as --json, and its page.
	jsonFiles, _ := filepath.Glob(filepath.Join(reports, "drill-*.json"))
	if len(jsonFiles) != 1 || !regexp.MustCompile(`/drill-\d{8}T\d{6}Z\.json$`).MatchString(jsonFiles[0]) {
		t.Fatalf("report files %v", jsonFiles)
	}
	var fromFile drillReport
	if err := json.Unmarshal(readFile(t, jsonFiles[0]), &fromFile); err != nil || fromFile.Jobs[0].RTOSecondsEstimate != j.RTOSecondsEstimate || fromFile.Passed != r.Passed {
		t.Errorf("report file %s differs from --json (%v)", jsonFiles[0], err)
	}
	page := strings.TrimSuffix(jsonFiles[0], ".json") + ".html"
	if !strings.Contains(res.stderr, page) {
		t.Errorf("drill --json --report did not say where the page is: %s", res.stderr)
	}
	for _, f := range []string{jsonFiles[0], page} {
		checkOutput(t, "drill report "+filepath.Base(f), string(readFile(t, f)))
	}
	html := string(readFile(t, page))
	for _, bad := range []string{"<script", "http://", "https://", "<link", "@import"} {
		if strings.Contains(strings.ReplaceAll(html, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("the page holds %q: it must be self-contained", bad)
		}
	}
	text := renderPage(t, page)
	for _, want := range []string{"ledgers", "PASSED", strconv.Itoa(j.Sampled), strconv.FormatFloat(j.RTOSecondsEstimate, 'f', -1, 64),
		strconv.FormatFloat(j.RestoreBytesPerSecond, 'f', -1, 64), "Toronto TR2", fingerprint, stray, "through voyageur serve"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page does not show %q", want)
		}
	}

	// The stored copy at the destination: an age file only the identity
	// opens, holding this job's report and no secret.
	stored := storedReports(t, s)
	if len(stored) != 1 {
		t.Fatalf("stored reports: %v", stored)
	}
	ids, err := crypto.LoadIdentities(s.k.identity)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.dst.client(t).GetObject(context.Background(), s.dst.bucket, stored[0], minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := age.Decrypt(obj, ids...)
	if err != nil {
		t.Fatalf("decrypt the stored report %s: %v", stored[0], err)
	}
	plain, _ := io.ReadAll(dec)
	checkOutput(t, "stored drill report", string(plain))
	if !bytes.Contains(plain, []byte(`"rto_seconds_estimate":`+strconv.FormatFloat(j.RTOSecondsEstimate, 'f', -1, 64))) {
		t.Errorf("stored report: %s", plain)
	}
	// The reserved prefix is not a replica: restore and verify ignore it.
	if r := runVerify(t, 0, "-c", s.cfg, "--identity", s.k.identity); r.Replica != len(s.state) || len(r.Extra) != 0 {
		t.Errorf("verify with a stored drill report: %+v", r)
	}

	// A recovery host has no journal: the drill needs none, creates none,
	// and measures the RPO from the source alone.
	recovery := t.TempDir()
	noJournal := writeConfig(t, recovery, jobConfig{Journal: filepath.Join(recovery, "journal.db"), Src: s.src, Dst: s.dst, ExtraJobLines: s.jobLines})
	nextSecond()
	r, _ = runDrill(t, 0, "-c", noJournal, "--identity", s.k.identity, "--sample-bytes", "1KiB")
	j = r.Jobs[0]
	if j.RPOSeconds == nil || *j.RPOSeconds != 0 || !strings.Contains(j.RPOBasis, "no journal at") || j.Verified != j.Sampled || j.Sampled < 1 {
		t.Errorf("drill without a journal: rpo %v (%s), verified %d of %d", j.RPOSeconds, j.RPOBasis, j.Verified, j.Sampled)
	}
	if _, err := os.Stat(filepath.Join(recovery, "journal.db")); err == nil {
		t.Error("the drill created a journal")
	}

	// A missed objective fails the drill: a change not replicated for
	// over a second against an RPO of one second, and an RTO of 1ms.
	putSource(t, s.src, "a/late.csv", srcObject{data: []byte("late\n")})
	time.Sleep(1500 * time.Millisecond)
	missed := s.config(t, t.TempDir(), "    objectives: {rpo: 1s, rto: 1ms}\n")
	nextSecond()
	r, _ = runDrill(t, 1, "-c", missed, "--identity", s.k.identity, "--sample", "100", "--report", reports)
	j = r.Jobs[0]
	if r.Passed || j.Passed || j.RPOSeconds == nil || *j.RPOSeconds < 1 || *j.Objectives.RPOMet || *j.Objectives.RTOMet ||
		!slices.ContainsFunc(j.Problems, func(p string) bool { return strings.Contains(p, "RPO objective 1s missed") }) ||
		!slices.ContainsFunc(j.Problems, func(p string) bool { return strings.Contains(p, "RTO objective 1ms missed") }) {
		t.Errorf("missed objectives: passed %v, rpo %v, problems %v", j.Passed, j.RPOSeconds, j.Problems)
	}
	if j.Verified != j.Sampled || len(j.Failed) != 0 {
		t.Errorf("missed objectives, replica intact: verified %d of %d, failed %v", j.Verified, j.Sampled, j.Failed)
	}
	syncJSON(t, 0, "-c", s.cfg)
	nextSecond()

	// A tampered replica: one byte flipped in the last chunk of one
	// replica. The drill fails and names the key, in JSON and for people.
	name := crypto.HashedName(readFile(t, s.k.nameSecret), "a/03.csv")
	c := s.dst.client(t)
	o, err := c.GetObject(context.Background(), s.dst.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 0x01
	if _, err := c.PutObject(context.Background(), s.dst.bucket, name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	r, _ = runDrill(t, 1, "-c", s.cfg, "--identity", s.k.identity, "--sample", "100", "--report", reports)
	j = r.Jobs[0]
	if r.Passed || len(j.Failed) != 1 || j.Failed[0].Key != "a/03.csv" || j.Verified != j.Sampled-1 || j.ServeVerified != j.Verified {
		t.Errorf("tampered replica: passed %v, verified %d of %d (%d through serve), failed %+v", r.Passed, j.Verified, j.Sampled, j.ServeVerified, j.Failed)
	}
	nextSecond()
	human := runVoyageur(t, "drill", "-c", s.cfg, "--identity", s.k.identity, "--sample", "100")
	if human.code != 1 || !strings.Contains(human.stdout, "failed a/03.csv") || !strings.Contains(human.stdout, "ledgers: FAILED") {
		t.Errorf("drill (human) on a tampered replica: exit %d\n%s\n%s", human.code, human.stdout, human.stderr)
	}

	// The history: every drill stored at the destination, newest first;
	// the page of the last drill charts the three found in the directory.
	hist := runVoyageur(t, "drill", "-c", s.cfg, "--identity", s.k.identity, "--history")
	lines := strings.Split(strings.TrimSpace(hist.stdout), "\n")
	if hist.code != 0 || len(lines) != 5 || !strings.Contains(lines[0], "ledgers  FAILED") || !strings.Contains(lines[4], "ledgers  passed") {
		t.Errorf("drill --history: exit %d\n%s\n%s", hist.code, hist.stdout, hist.stderr)
	}
	pages, _ := filepath.Glob(filepath.Join(reports, "drill-*.html"))
	slices.Sort(pages)
	if text := renderPage(t, pages[len(pages)-1]); len(pages) != 3 || !strings.Contains(text, "3 drills of this job found") || !strings.Contains(text, "a/03.csv") {
		t.Errorf("%d pages; the last does not chart 3 drills or name the failed key", len(pages))
	}
}

// nextSecond waits for the next second: report names carry the time to the
// second, and a drill refuses to overwrite an earlier report.
func nextSecond() { time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) }

// storedReports lists the drill reports kept at the destination.
func storedReports(t *testing.T, s *drillSetup) []string {
	t.Helper()
	var keys []string
	for o := range s.dst.client(t).ListObjects(context.Background(), s.dst.bucket, minio.ListObjectsOptions{Prefix: ".voyageur/drills/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// renderPage opens a report page in headless Chromium: it must render
// with no console message (the page's policy forbids every fetch, so one
// would be reported there), and a screenshot is kept. It returns the
// rendered text.
func renderPage(t *testing.T, page string) string {
	t.Helper()
	chromium := requireTool(t, "chromium")
	artefacts := os.Getenv("VOYAGEUR_ARTEFACTS")
	if artefacts == "" {
		artefacts = "artefacts"
	}
	if err := os.MkdirAll(artefacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shot, err := filepath.Abs(filepath.Join(artefacts, strings.TrimSuffix(filepath.Base(page), ".html")+".png"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		profile := t.TempDir()
		cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	consoleLines := func(stderr string) []string {
		var out []string
		for l := range strings.Lines(stderr) {
			if strings.Contains(l, ":CONSOLE") {
				out = append(out, l)
			}
		}
		return out
	}
	// The console check catches what it should: a page that tries a fetch
	// under the same policy is reported.
	control := filepath.Join(t.TempDir(), "control.html")
	if err := os.WriteFile(control, []byte(`<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'"></head><body><img src="http://127.0.0.1:9/x.png"></body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr := run("--dump-dom", "file://"+control); len(consoleLines(stderr)) == 0 {
		t.Fatalf("chromium reported no console message for a page that tries a fetch: the check would see nothing\n%s", stderr)
	}
	dom, stderr := run("--dump-dom", "file://"+page)
	if c := consoleLines(stderr); len(c) > 0 {
		t.Errorf("the page logged in the console: %s", strings.Join(c, ""))
	}
	_, stderr = run("--screenshot="+shot, "--window-size=1280,4000", "--hide-scrollbars", "file://"+page)
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Errorf("no screenshot at %s: %v\n%s", shot, err, stderr)
	} else {
		t.Logf("screenshot of %s: %s", filepath.Base(page), shot)
	}
	checkOutput(t, "drill page (rendered)", dom)
	return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, " ")
}

// TestDrillConfigErrors: residency, objectives and flag errors exit 2
// before anything is read; residency: ca passes with the OVHcloud bhs
// preset (its url pointed at the test server).
func TestDrillConfigErrors(t *testing.T) {
	// The destination takes any region, as OVHcloud's bhs for the preset.
	srcSrv, dstSrv := startServer(t), minioserver.StartWithEnv(t, "MINIO_REGION=")
	addSecret(dstSrv.SecretKey)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	putSource(t, src, "a/1.csv", srcObject{data: []byte("one\n")})
	enc := k.encryptionYAML("hashed", "zstd")

	unknown := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: enc + "    residency: ca\n"})
	for _, args := range [][]string{
		{"drill", "-c", unknown, "--identity", k.identity},
		{"sync", "-c", unknown},
		{"watch", "-c", unknown},
	} {
		res := runVoyageur(t, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "residency: ca") || !strings.Contains(res.stderr, "not known to be in Canada") {
			t.Errorf("%s with residency: ca and a destination of unknown location: exit %d, %s", args[0], res.code, res.stderr)
		}
	}
	if got := listObjects(t, dst, ""); len(got) != 0 {
		t.Errorf("a refused sync wrote %d objects", len(got))
	}

	// OVHcloud bhs: the preset says Canada.
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: enc + "    residency: ca\n"})
	raw := strings.Replace(string(readFile(t, cfg)), "canada: {type: minio,", "canada: {type: ovh, region: bhs,", 1)
	if err := os.WriteFile(cfg, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	syncJSON(t, 0, "-c", cfg)
	r, _ := runDrill(t, 0, "-c", cfg, "--identity", k.identity)
	if d := r.Jobs[0].Destination; d.Provider != "ovhcloud" || d.Region != "bhs" || d.InCanada == nil || !*d.InCanada || r.Jobs[0].Verified != 1 {
		t.Errorf("ovh bhs: %+v, verified %d", d, r.Jobs[0].Verified)
	}

	// A plain job needs no identity; its stored report is plain JSON. Its
	// replica's ETag is the source's, so the source witnesses the bytes.
	plainDir := t.TempDir()
	plain := writeConfig(t, plainDir, jobConfig{Src: src, Dst: dst, DstPrefix: "plain/"})
	syncJSON(t, 0, "-c", plain)
	r, _ = runDrill(t, 0, "-c", plain)
	if j := r.Jobs[0]; j.Verified != 1 || len(j.Recipients) != 0 || j.VerifiedAgainst["source"] != 1 {
		t.Errorf("plain job: verified %d (%v), recipients %v", j.Verified, j.VerifiedAgainst, j.Recipients)
	}
	stored := listObjects(t, dst, "plain/.voyageur/drills/")
	if len(stored) != 1 || !strings.HasSuffix(sortedKeys(stored)[0], "-ledgers.json") {
		t.Errorf("plain job's stored report: %v", sortedKeys(stored))
	}

	// Another identity opens nothing: the drill could not be carried out,
	// which fails it (exit 1), and the report says why.
	other := newKeys(t, t.TempDir(), false)
	r, _ = runDrill(t, 1, "-c", cfg, "--identity", other.identity)
	if j := r.Jobs[0]; j.Passed || !slices.ContainsFunc(j.Problems, func(p string) bool { return strings.Contains(p, "does not match the replica's recipients") }) {
		t.Errorf("wrong identity: %+v", j.Problems)
	}

	good := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: enc})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no identity for an encrypted job", []string{"-c", good}, "--identity FILE is required"},
		{"unknown job", []string{"-c", good, "--identity", k.identity, "--job", "nope"}, `"nope"`},
		{"both sample flags", []string{"-c", good, "--identity", k.identity, "--sample", "3", "--sample-bytes", "1MiB"}, "sample"},
		{"bad sample size", []string{"-c", good, "--identity", k.identity, "--sample-bytes", "lots"}, "--sample-bytes"},
		{"bad objectives", []string{"-c", writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: dst, ExtraJobLines: enc + "    objectives: {rpo: soon}\n"}), "--identity", k.identity}, "not a duration"},
		{"bad residency", []string{"-c", writeConfig(t, t.TempDir(), jobConfig{Src: src, Dst: dst, ExtraJobLines: enc + "    residency: canada\n"}), "--identity", k.identity}, "residency"},
		{"identity is not one", []string{"-c", good, "--identity", k.nameSecret}, "--identity"},
	} {
		res := runVoyageur(t, append([]string{"drill"}, c.args...)...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) || res.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %s; want 2 and %q", c.name, res.code, res.stdout, res.stderr, c.want)
		}
	}
}

// TestDrillWatch: for a job replicated by watch (MinIO listen events), the
// drill reports the replication-lag histogram from the journal: the
// objects changed while watch ran, counted by their lag.
func TestDrillWatch(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	putSource(t, src, "before.csv", srcObject{data: []byte("copied by the start-up reconcile\n")})
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: k.encryptionYAML("hashed", "zstd") + "    events: [{listen: true}]\n"})

	w := startWatch(t, cfg)
	job := `{voyageur_job="ledgers"}`
	waitFor(t, 60*time.Second, "the start-up reconcile", func() bool {
		return w.metric(t, "voyageur_last_reconcile_timestamp_seconds"+job) > 0
	})
	// The listen stream starts after the reconcile: put objects until
	// events carry some of them over.
	n := 0
	waitFor(t, 60*time.Second, "objects replicated from events", func() bool {
		n++
		putSource(t, src, fmt.Sprintf("live/%03d.csv", n), srcObject{data: []byte("live\n")})
		time.Sleep(100 * time.Millisecond)
		return w.metric(t, "voyageur_objects_replicated_total"+job) >= 3
	})
	w.stop(t)

	r, _ := runDrill(t, 0, "-c", cfg, "--identity", k.identity, "--sample", "5")
	j := r.Jobs[0]
	total := 0
	for _, b := range j.LagHistogram {
		total += b.Count
	}
	if len(j.LagHistogram) != 17 || j.LagObjects < 2 || total != j.LagObjects {
		t.Errorf("watch job: lag histogram %+v of %d objects (sum %d), want the objects put while watch ran", j.LagHistogram, j.LagObjects, total)
	}
	if j.LagHistogram[len(j.LagHistogram)-1].LESeconds != nil {
		t.Errorf("the last bucket has a bound: %v", *j.LagHistogram[len(j.LagHistogram)-1].LESeconds)
	}
}
