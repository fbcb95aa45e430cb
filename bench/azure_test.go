package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/azuriteserver"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// BenchmarkAzureVsRclone runs voyageur and rclone's azureblob backend
// (through crypt, standard name encryption) from the source MinIO into the
// Azurite emulator, on workloads L and S encrypted, alternating which tool
// goes first, each run into a fresh container, and writes the medians and
// ratios into docs/BENCHMARKS.md. Only the ratio means something: the
// emulator, one Node.js process storing blobs on local disk, is the limit
// of both tools. -quick and -only (names "Azure L", "Azure S", written
// without the space) as for BenchmarkVsRclone.
func BenchmarkAzureVsRclone(b *testing.B) {
	if !wants("Azure L") && !wants("Azure S") {
		return
	}
	r := newRig(b)
	az := azuriteserver.Start(b)
	rep := report{started: time.Now(), loadBefore: loadavg()}
	scale, n := 1, trials
	if *quick {
		scale, n = 8, 1
	}
	nSmall := int64(2000 / scale)
	writeRandom(b, filepath.Join(r.data, "L"), 4, 128<<20/scale, 1)
	writeRandom(b, filepath.Join(r.data, "S"), int(nSmall), 16<<10, 2)
	for _, w := range []string{"L", "S"} {
		run(b, r.srcAWS, debianAWS, "--endpoint-url", r.src.URL, "s3", "cp", "--recursive", "--only-show-errors",
			filepath.Join(r.data, w), "s3://"+r.srcBucket+"/"+w+"/")
	}
	for _, w := range []workload{
		{name: "Azure L", what: "4 × 128 MiB random, encrypted, MinIO → Azurite", prefix: "L", files: 4, encrypted: true, flags: largeFlags},
		{name: "Azure S", what: "2,000 × 16 KiB random, encrypted, MinIO → Azurite", prefix: "S", files: nSmall, encrypted: true, flags: smallFlags},
	} {
		if wants(w.name) {
			rep.results = append(rep.results, r.compareAzure(az, w, n))
		}
	}
	rep.loadAfter = loadavg()
	rep.finished = time.Now()
	rep.versions = []string{
		moduleVersion(r.rclone), moduleVersion(minioserver.Binary(b)),
		"azurite " + firstLine(azuriteserver.Binary(b), "--version"),
	}
	md := rep.azureMarkdown()
	b.Log("\n" + md)
	for _, res := range rep.results {
		b.ReportMetric(res.ratio(), strings.ReplaceAll(res.name, " ", "-")+"-ratio")
	}
	if *quick || *only != "" {
		return
	}
	if err := replaceSection(docPath, "vs-rclone-azure", md); err != nil {
		b.Fatal(err)
	}
}

// compareAzure runs the workload n times per tool into fresh containers.
func (r *rig) compareAzure(az *azuriteserver.Server, w workload, n int) result {
	res := result{workload: w}
	for i := range n {
		tools := []string{"voyageur", "rclone"}
		if i%2 == 1 {
			tools[0], tools[1] = tools[1], tools[0]
		}
		for _, tool := range tools {
			cont := az.CreateContainer(r.tb)
			dir := mkdir(r.tb, r.dir, fmt.Sprintf("run-%d", r.next()))
			if tool == "voyageur" {
				s := r.voyageurToAzure(az, w, cont, dir)
				res.voy, res.wire = append(res.voy, s), parseSummary(r.tb, s.out).BytesWritten
			} else {
				res.rcl = append(res.rcl, r.rcloneToAzure(az, w, cont))
			}
			// The emulator's disk holds one run's blobs at a time.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := az.Client(r.tb).DeleteContainer(ctx, cont, nil); err != nil {
				r.tb.Fatalf("delete container %s: %v", cont, err)
			}
			cancel()
			os.RemoveAll(dir)
		}
		r.tb.Logf("%s trial %d: voyageur %s, rclone %s", w.name, i+1, res.voy[i].wall, res.rcl[i].wall)
	}
	return res
}

// voyageurToAzure runs `voyageur sync` of the workload into container cont.
func (r *rig) voyageurToAzure(az *azuriteserver.Server, w workload, cont, dir string) sample {
	r.tb.Helper()
	cfg := fmt.Sprintf(`journal: %s
endpoints:
  source: {type: aws, url: %q, region: us-east-1, path_style: true, access_key: %q, secret_key: %q}
  canada: {type: azure, account: %s, key: %q, url: %q}
jobs:
  - name: bench
    source: source:%s/%s/
    destination: canada:%s/
    encryption: {recipients: [%q], compression: zstd, names: hashed, name_secret_file: %q}
`, filepath.Join(dir, "journal.db"), r.src.URL, r.src.AccessKey, r.src.SecretKey, azuriteserver.Account, azuriteserver.Key, az.URL,
		r.srcBucket, w.prefix, cont, r.recipient, r.nameSecret)
	path := filepath.Join(dir, "voyageur.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		r.tb.Fatal(err)
	}
	s := run(r.tb, baseEnv(), r.voyageur, "sync", "--json", "-c", path)
	if sum := parseSummary(r.tb, s.out); sum.Copied != w.files {
		r.tb.Fatalf("voyageur %s: copied %d objects, want %d", w.name, sum.Copied, w.files)
	}
	return s
}

// rcloneToAzure runs `rclone copy` of the workload into container cont
// through a crypt remote over rclone's azureblob backend.
func (r *rig) rcloneToAzure(az *azuriteserver.Server, w workload, cont string) sample {
	r.tb.Helper()
	conf := filepath.Join(r.dir, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		r.tb.Fatal(err)
	}
	env := append(baseEnv(), "RCLONE_CONFIG="+conf)
	env = append(env, rcloneS3("SRC", r.src.URL, r.src)...)
	env = append(env,
		"RCLONE_CONFIG_AZ_TYPE=azureblob",
		"RCLONE_CONFIG_AZ_ACCOUNT="+azuriteserver.Account,
		"RCLONE_CONFIG_AZ_KEY="+azuriteserver.Key,
		"RCLONE_CONFIG_AZ_ENDPOINT="+az.URL,
		"RCLONE_CONFIG_AZC_TYPE=crypt",
		"RCLONE_CONFIG_AZC_REMOTE=az:"+cont,
		"RCLONE_CONFIG_AZC_PASSWORD="+r.rclonePass,
		"RCLONE_CONFIG_AZC_FILENAME_ENCRYPTION=standard",
		"RCLONE_CONFIG_AZC_DIRECTORY_NAME_ENCRYPTION=true",
	)
	args := append([]string{"copy", "src:" + r.srcBucket + "/" + w.prefix, "azc:", "-q"}, w.flags...)
	s := run(r.tb, env, r.rclone, args...)
	if got := countBlobs(r.tb, az, cont); got != w.files {
		r.tb.Fatalf("rclone %s: %d blobs in the container, want %d", w.name, got, w.files)
	}
	return s
}

// countBlobs counts a container's blobs with the azblob SDK.
func countBlobs(tb testing.TB, az *azuriteserver.Server, cont string) int64 {
	tb.Helper()
	var n int64
	pager := az.Client(tb).NewListBlobsFlatPager(cont, nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("list %s: %v", cont, err)
		}
		n += int64(len(page.Segment.BlobItems))
	}
	return n
}

// azureMarkdown is the table of BenchmarkAzureVsRclone.
func (rep *report) azureMarkdown() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Run %s, %s on %s.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.finished.Sub(rep.started).Round(time.Second), machine())
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) before: %s; after: %s. Tools: %s.\n\n", rep.loadBefore, rep.loadAfter, strings.Join(rep.versions, "; "))
	b.WriteString("| workload | voyageur (median) | rclone (median) | voyageur / rclone | peak RSS voyageur | peak RSS rclone | CPU voyageur / rclone | runs voyageur / rclone (s) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rep.results {
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %.2f | %s | %s | %.2f / %.2f s | %s / %s |\n", r.name, r.what,
			secs(median(r.voy)), secs(median(r.rcl)), r.ratio(), mib(peak(r.voy)), mib(peak(r.rcl)),
			cpu(r.voy).Seconds(), cpu(r.rcl).Seconds(), all(r.voy), all(r.rcl))
	}
	return b.String()
}
