package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// versions is what `aws s3api list-object-versions` prints.
type versions struct {
	Versions []struct {
		Key, VersionId string
		IsLatest       bool
	}
	DeleteMarkers []struct {
		Key, VersionId string
		IsLatest       bool
	}
}

func listVersions(t *testing.T, s side, key string) versions {
	t.Helper()
	var v versions
	out := s.srv.AWS(t, "s3api", "list-object-versions", "--bucket", s.bucket, "--prefix", key)
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("list-object-versions: %v\n%s", err, out)
	}
	return v
}

// TestRetention: with retention, every replica (single PUT and multipart)
// is locked in governance mode for a day; awscli cannot delete the locked
// version, an overwrite and a propagated delete add a version and a delete
// marker and leave it intact, and restore brings back the latest state and
// the state before the delete. A destination without object lock stops the
// run with a clear error, exit 1, writing nothing.
func TestRetention(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	files := map[string]int{"a.csv": 1000, "b.csv": 2000, "big.bin": 6 * mib}
	for k, n := range files {
		writeFile(t, filepath.Join(dir, "data", k), n, byte(n))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")
	const retention = "    retention: {mode: governance, days: 1}\n"

	t.Run("no object lock", func(t *testing.T) {
		dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, true), kind: "minio"}
		sub := filepath.Join(dir, "nolock")
		os.MkdirAll(sub, 0o700)
		res := runVoyageur(t, "sync", "-c", writeConfig(t, sub, jobConfig{Src: src, Dst: dst, ExtraJobLines: retention}))
		want := "destination bucket " + dstSrv.URL + "/" + dst.bucket + " has no object lock: retention needs a bucket created with object lock"
		if res.code != 1 || !strings.Contains(res.stderr+res.stdout, want) {
			t.Errorf("exit %d, want 1 and %q:\n%s%s", res.code, want, res.stderr, res.stdout)
		}
		if got := listObjects(t, dst, ""); len(got) != 0 {
			t.Errorf("the refused run wrote %d objects", len(got))
		}
	})

	dst := side{srv: dstSrv, bucket: dstSrv.CreateLockedBucket(t), kind: "aws"}
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "replica/", Deletes: "propagate", MaxDelete: "1", ExtraJobLines: retention})
	start := time.Now()
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != int64(len(files)) {
		t.Fatalf("sync: %+v", s)
	}
	locked := map[string]string{} // key → locked version
	for k := range files {
		var ret struct {
			Retention struct{ Mode, RetainUntilDate string }
		}
		out := dstSrv.AWS(t, "s3api", "get-object-retention", "--bucket", dst.bucket, "--key", "replica/"+k)
		if err := json.Unmarshal(out, &ret); err != nil {
			t.Fatalf("get-object-retention: %v\n%s", err, out)
		}
		until, err := time.Parse(time.RFC3339, ret.Retention.RetainUntilDate)
		if ret.Retention.Mode != "GOVERNANCE" || err != nil || until.Before(start.Add(24*time.Hour-time.Second)) || until.After(time.Now().Add(24*time.Hour)) {
			t.Errorf("%s: retention %+v (%v), want GOVERNANCE a day after the sync", k, ret.Retention, err)
		}
		v := listVersions(t, dst, "replica/"+k)
		if len(v.Versions) != 1 {
			t.Fatalf("%s: versions %+v", k, v)
		}
		locked[k] = v.Versions[0].VersionId
	}
	// The provider's own client cannot remove a locked version.
	for k, v := range locked {
		out, err := dstSrv.TryAWS(t, "s3api", "delete-object", "--bucket", dst.bucket, "--key", "replica/"+k, "--version-id", v)
		// AWS answers AccessDenied, MinIO InvalidRequest "Object is WORM protected".
		if err == nil || !strings.Contains(err.Error(), "AccessDenied") && !strings.Contains(err.Error(), "WORM protected") {
			t.Errorf("delete-object --version-id of the locked %s: %v %s", k, err, out)
		}
	}

	// An overwrite and a delete at the source, after a point in time.
	time.Sleep(1100 * time.Millisecond)
	mid := time.Now().UTC().Truncate(time.Second)
	writeFile(t, filepath.Join(dir, "a2.csv"), 1500, 77)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "a2.csv"), "s3://"+src.bucket+"/a.csv")
	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/b.csv")
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 1 || s.Deleted != 1 || s.Failed != 0 {
		t.Fatalf("sync after an overwrite and a delete: %+v", s)
	}
	if v := listVersions(t, dst, "replica/a.csv"); len(v.Versions) != 2 || !v.Versions[0].IsLatest && !v.Versions[1].IsLatest {
		t.Errorf("a.csv after the overwrite: %+v", v)
	}
	if v := listVersions(t, dst, "replica/b.csv"); len(v.Versions) != 1 || len(v.DeleteMarkers) != 1 || !v.DeleteMarkers[0].IsLatest {
		t.Errorf("b.csv after the delete: %+v, want the locked version behind a delete marker", v)
	}
	for k, v := range locked {
		got := filepath.Join(dir, "got-"+k)
		dstSrv.AWS(t, "s3api", "get-object", "--bucket", dst.bucket, "--key", "replica/"+k, "--version-id", v, got)
		if md5hexOf(readFile(t, got)) != md5hexOf(readFile(t, filepath.Join(dir, "data", k))) {
			t.Errorf("locked version of %s changed", k)
		}
	}

	// Restore and verify read the versioned, locked destination.
	if res := runVoyageur(t, "verify", "-c", cfg, "--job", "ledgers"); res.code != 0 {
		t.Errorf("verify: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	latest := filepath.Join(dir, "restore-latest")
	if res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--to", latest); res.code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	before := filepath.Join(dir, "restore-before")
	if res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--to", before, "--as-of", mid.Format(time.RFC3339)); res.code != 0 {
		t.Fatalf("restore --as-of: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for path, want := range map[string]string{
		filepath.Join(latest, "a.csv"):   filepath.Join(dir, "a2.csv"),
		filepath.Join(latest, "big.bin"): filepath.Join(dir, "data", "big.bin"),
		filepath.Join(before, "a.csv"):   filepath.Join(dir, "data", "a.csv"),
		filepath.Join(before, "b.csv"):   filepath.Join(dir, "data", "b.csv"),
	} {
		if md5hexOf(readFile(t, path)) != md5hexOf(readFile(t, want)) {
			t.Errorf("restored %s differs from %s", path, want)
		}
	}
	if _, err := os.Stat(filepath.Join(latest, "b.csv")); !os.IsNotExist(err) {
		t.Errorf("the latest state restores the deleted b.csv: %v", err)
	}
}
