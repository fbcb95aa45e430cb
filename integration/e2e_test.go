package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const mib = 1 << 20

// seedDataSet writes the end-to-end data set under dir/data and returns the
// sizes by relative key. Small files are many; a few straddle the part size.
func seedDataSet(t testing.TB, dir string, smallCount int) map[string]int {
	files := map[string]int{
		"sizes/empty":                  0,
		"sizes/one-byte":               1,
		"sizes/part-minus-1":           5*mib - 1,
		"sizes/part-exact":             5 * mib,
		"sizes/part-plus-1":            5*mib + 1,
		"multi/three-parts.bin":        12*mib + 7,
		"multi/four-parts.bin":         17 * mib,
		"odd keys/with space.txt":      100,
		"odd keys/unicode-é-漢字.csv":    200,
		"odd keys/plus+amp&eq=q?.txt":  300,
		"deep/a/b/c/d/e/f/g/h/i/j.txt": 400,
	}
	for i := range smallCount {
		files[fmt.Sprintf("small/%04d/entry-%d.json", i/100, i)] = 512 + i%1000
	}
	for k, n := range files {
		writeFile(t, filepath.Join(dir, "data", k), n, byte(len(k)+n))
	}
	return files
}

func TestEndToEnd(t *testing.T) {
	for _, c := range []struct{ name, src, dst string }{
		{"aws-sdk source, minio-go destination", "aws", "minio"},
		{"minio-go source, aws-sdk destination", "minio", "aws"},
	} {
		t.Run(c.name, func(t *testing.T) { endToEnd(t, c.src, c.dst) })
	}
}

func endToEnd(t testing.TB, srcKind, dstKind string) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: srcKind}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: dstKind}
	dir := t.TempDir()
	files := seedDataSet(t, dir, 2000)
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/daily/")
	// Content type and user metadata, set by an outside client.
	writeFile(t, filepath.Join(dir, "report.pdf"), 6*mib+3, 9)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", "--content-type", "application/pdf",
		"--metadata", "Owner=Treasury,Classification=internal", filepath.Join(dir, "report.pdf"), "s3://"+src.bucket+"/daily/meta/report.pdf")
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", "--content-type", "text/csv; charset=utf-8",
		"--metadata", "ledger-date=2026-11-24", filepath.Join(dir, "data/odd keys/with space.txt"), "s3://"+src.bucket+"/daily/meta/ledger.csv")
	files["meta/report.pdf"], files["meta/ledger.csv"] = 6*mib+3, 100
	// Outside the job's prefix: never copied.
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "report.pdf"), "s3://"+src.bucket+"/other/report.pdf")

	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "daily/", DstPrefix: "replica/", Deletes: "propagate"})

	// A dry run plans everything and writes nothing.
	dry := syncJSON(t, 0, "-c", cfg, "--dry-run")
	if dry.Copied != int64(len(files)) {
		t.Errorf("dry run plans %d copies, want %d", dry.Copied, len(files))
	}
	if got := listObjects(t, dst, ""); len(got) != 0 {
		t.Fatalf("dry run wrote %d objects", len(got))
	}

	s := syncJSON(t, 0, "-c", cfg)
	var total int64
	for _, n := range files {
		total += int64(n)
	}
	if s.Copied != int64(len(files)) || s.Failed != 0 || s.BytesWritten != total {
		t.Errorf("first sync: %+v, want %d copied and %d bytes", s, len(files), total)
	}
	assertReplica(t, src, dst, "daily/", "replica/")
	for _, key := range []string{"meta/report.pdf", "meta/ledger.csv"} {
		so, do := statObject(t, src, "daily/"+key), statObject(t, dst, "replica/"+key)
		if so.contentType != do.contentType || fmt.Sprint(so.meta) != fmt.Sprint(sourceMeta(t, do)) {
			t.Errorf("%s: source %q %v, replica %q %v", key, so.contentType, so.meta, do.contentType, do.meta)
		}
	}
	// The outside client sees the metadata on the replica too.
	head := string(dstSrv.AWS(t, "s3api", "head-object", "--bucket", dst.bucket, "--key", "replica/meta/report.pdf"))
	if !strings.Contains(head, `"owner": "Treasury"`) || !strings.Contains(head, "application/pdf") {
		t.Errorf("aws s3api head-object on the replica: %s", head)
	}

	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 || s.BytesWritten != 0 || s.Skipped != int64(len(files)) {
		t.Errorf("second sync copied again: %+v", s)
	}

	// Changes and deletes follow.
	writeFile(t, filepath.Join(dir, "changed.bin"), 5*mib+1, 77)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "changed.bin"), "s3://"+src.bucket+"/daily/sizes/part-plus-1")
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "report.pdf"), "s3://"+src.bucket+"/daily/new/added.pdf")
	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/daily/deep/a/b/c/d/e/f/g/h/i/j.txt")
	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/daily/odd keys/plus+amp&eq=q?.txt")

	before := listObjects(t, dst, "")
	dry = syncJSON(t, 0, "-c", cfg, "--dry-run")
	if dry.Copied != 2 || dry.Deleted != 2 {
		t.Errorf("dry run after changes: %+v, want 2 copies and 2 deletes", dry)
	}
	if after := listObjects(t, dst, ""); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("dry run changed the destination")
	}
	s = syncJSON(t, 0, "-c", cfg)
	if s.Copied != 2 || s.Deleted != 2 || s.Failed != 0 {
		t.Errorf("sync after changes: %+v, want 2 copied and 2 deleted", s)
	}
	assertReplica(t, src, dst, "daily/", "replica/")
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("incomplete uploads left: %v", up)
	}

	// status reads the journal back.
	res := runVoyageur(t, "status", "-c", cfg)
	if res.code != 0 || !strings.Contains(res.stdout, "replicated objects: ") || !strings.Contains(res.stdout, "deleted 2") {
		t.Errorf("status: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// assertReplica checks that dst/dstPrefix holds exactly the objects of
// src/srcPrefix with the same bytes: ETags of single-part objects are MD5s,
// multi-part ones are compared by content.
func assertReplica(t testing.TB, src, dst side, srcPrefix, dstPrefix string) {
	t.Helper()
	want, got := listObjects(t, src, srcPrefix), listObjects(t, dst, dstPrefix)
	if a, b := sortedKeys(want), sortedKeys(got); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("replica keys differ:\nsource  %d keys\nreplica %d keys\nmissing: %v\nextra: %v", len(a), len(b), diff(a, b), diff(b, a))
	}
	for k, w := range want {
		g := got[k]
		if g.size != w.size {
			t.Errorf("%s: size %d, want %d", k, g.size, w.size)
			continue
		}
		if strings.Contains(w.etag, "-") || strings.Contains(g.etag, "-") {
			if md5Object(t, src, srcPrefix+k) != md5Object(t, dst, dstPrefix+k) {
				t.Errorf("%s: replica bytes differ", k)
			}
		} else if g.etag != w.etag {
			t.Errorf("%s: etag %s, want %s", k, g.etag, w.etag)
		}
		// Content-Type and user metadata: every object but the bulk of
		// the small ones, of which a sample.
		if !strings.HasPrefix(k, "small/") || len(k)%7 == 0 {
			so, do := statObject(t, src, srcPrefix+k), statObject(t, dst, dstPrefix+k)
			if so.contentType != do.contentType || fmt.Sprint(so.meta) != fmt.Sprint(sourceMeta(t, do)) {
				t.Errorf("%s: source %q %v, replica %q %v", k, so.contentType, so.meta, do.contentType, do.meta)
			}
		}
	}
}

func diff(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return out
}

func TestFailSafeDeletes(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	for i := range 30 {
		writeFile(t, filepath.Join(dir, "data", fmt.Sprintf("ledger-%02d.csv", i)), 1000+i, byte(i))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/ledgers/")
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "ledgers/", Deletes: "propagate", MaxDelete: "10"})
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 30 {
		t.Fatalf("first sync: %+v", s)
	}
	srcSrv.AWS(t, "s3", "rm", "--recursive", "--only-show-errors", "s3://"+src.bucket+"/ledgers/")

	res := runVoyageur(t, "sync", "-c", cfg)
	if res.code != 1 || !strings.Contains(res.stdout+res.stderr, "refusing to delete 30 replicas") || !strings.Contains(res.stdout+res.stderr, "max_delete (10)") {
		t.Fatalf("emptied source: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if got := listObjects(t, dst, ""); len(got) != 30 {
		t.Fatalf("replica lost objects: %d left of 30", len(got))
	}
	// Within the limit, deletes propagate.
	for i := range 5 {
		writeFile(t, filepath.Join(dir, "data2", fmt.Sprintf("ledger-%02d.csv", i)), 1000+i, byte(i))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data2"), "s3://"+src.bucket+"/ledgers/")
	cfg = writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "ledgers/", Deletes: "propagate", MaxDelete: "25"})
	if s := syncJSON(t, 0, "-c", cfg); s.Deleted != 25 || s.Copied != 0 {
		t.Fatalf("sync within the limit: %+v, want 25 deleted", s)
	}
	assertReplica(t, src, dst, "ledgers/", "")

	// restore of a plain replica, to a directory.
	out := filepath.Join(dir, "restored")
	res = runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--to", out, "--json")
	if res.code != 0 || syncSummary(t, res).Copied != 5 {
		t.Fatalf("plain restore: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for i := range 5 {
		name := fmt.Sprintf("ledger-%02d.csv", i)
		if !bytes.Equal(readFile(t, filepath.Join(out, "ledgers", name)), readFile(t, filepath.Join(dir, "data2", name))) {
			t.Errorf("restored %s differs", name)
		}
	}

	// verify of a plain replica: clean, then one replica lost and one stale.
	if r := runVerify(t, 0, "-c", cfg); r.Source != 5 || r.Deep != 5 {
		t.Errorf("verify of a clean plain replica: %+v", r)
	}
	dstSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+dst.bucket+"/ledger-01.csv")
	writeFile(t, filepath.Join(dir, "changed.csv"), 10, 99)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "changed.csv"), "s3://"+src.bucket+"/ledgers/ledger-02.csv")
	if r := runVerify(t, 1, "-c", cfg); fmt.Sprint(r.Missing, r.Stale) != "[ledgers/ledger-01.csv] [ledgers/ledger-02.csv]" {
		t.Errorf("verify after damage: %+v", r)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ config, want string }{
		"unknown field": {"journal: j.db\nendpoints:\n  a: {type: minio, url: \"http://127.0.0.1:1\", colour: blue}\njobs: []\n",
			`line 3: unknown field "colour" in endpoints.a`},
		"missing endpoint": {"journal: j.db\nendpoints:\n  a: {type: minio, url: \"http://127.0.0.1:1\"}\njobs:\n  - name: x\n    source: a:src\n    destination: b:dst\n",
			`line 7: jobs[0].destination: unknown endpoint "b"`},
		"bad size": {"journal: j.db\nendpoints:\n  a: {type: minio, url: \"http://127.0.0.1:1\"}\njobs:\n  - name: x\n    source: a:src\n    destination: a:dst\n    transfer: {part_size: 5 MiBs}\n",
			`line 8: jobs[0].transfer.part_size: "5 MiBs" has an unknown unit`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			res := runVoyageur(t, "sync", "-c", path)
			if res.code != 2 || !strings.Contains(res.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", res.code, res.stderr, c.want)
			}
		})
	}
	if res := runVoyageur(t, "sync"); res.code != 2 || !strings.Contains(res.stderr, `"config" not set`) {
		t.Errorf("sync without -c: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := runVoyageur(t, "sync", "-c", filepath.Join(dir, "missing.yaml")); res.code != 2 || !strings.Contains(res.stderr, "missing.yaml") {
		t.Errorf("missing config file: exit %d, stderr %q", res.code, res.stderr)
	}
}
