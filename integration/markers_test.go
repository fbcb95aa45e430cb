package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/integration/minioserver"
	"github.com/voyageur-ca/voyageur/integration/versitygwserver"
)

// markerSource is a source with an empty folder marker, a marker that
// holds data and a file inside the first folder.
var markerSource = map[string]srcObject{
	"folder/":          {data: nil, contentType: "application/x-directory"},
	"trailing/":        {data: []byte("hi")},
	"folder/file.txt":  {data: []byte("inside\n")},
	"plain/readme.txt": {data: []byte("no marker here\n")},
}

// markerConfig writes a one-job config from src to dst, which is a
// bucket of dstSrv or, with fsDir set, the bucket "replica" of an fs
// endpoint there; the endpoint "back" is dstSrv, for restores.
func markerConfig(t *testing.T, dir string, src, dst side, fsDir, extra string) string {
	t.Helper()
	destination := "canada:" + dst.bucket + "/r/"
	if fsDir != "" {
		destination = "nas:replica/r/"
	}
	cfg := fmt.Sprintf(`journal: %s
endpoints:
  source: %s
  canada: %s
  nas: {type: fs, path: %q}
jobs:
  - name: ledgers
    source: source:%s/
    destination: %s
    transfer: {part_size: 5MiB, concurrency: 4}
%s`, filepath.Join(dir, "journal.db"), src.endpointYAML(), dst.endpointYAML(), filepath.Join(dir, "fs"), src.bucket, destination, extra)
	path := filepath.Join(dir, "voyageur.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFolderMarkers: zero-byte folder markers and a marker holding data
// replicate encrypted (names: plain) to MinIO and to an fs destination
// without any replica with bytes under a key ending in "/" (what
// versitygw's POSIX backend refuses with DirectoryObjectContainsData), and
// plain to MinIO; they come back as markers, bytes included, on restore to
// a bucket. Restored to a directory, the marker holding data is reported
// failed, never dropped quietly; a plain sync to an fs destination, which
// stores neither kind of marker, reports both. Against a real versitygw
// (POSIX backend) the encrypted job replicates both markers; a plain job,
// and a restore into a versitygw bucket, store the empty marker as a
// directory and report the one holding data failed (DirectoryObjectContainsData).
func TestFolderMarkers(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	for key, o := range markerSource {
		putSource(t, src, key, o)
	}

	// restoreChecks restores the job to a fresh bucket of the endpoint
	// named endpoint (to's server) and to a directory.
	restoreChecks := func(t *testing.T, cfg, endpoint string, to side, args ...string) {
		t.Helper()
		res := runVoyageur(t, append([]string{"restore", "--json", "-c", cfg, "--job", "ledgers", "--to", endpoint + ":" + to.bucket + "/back/"}, args...)...)
		if res.code != 0 {
			t.Fatalf("restore to a bucket: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		got := listObjects(t, to, "back/")
		if want := sortedKeys(markerSource); !slices.Equal(sortedKeys(got), want) {
			t.Errorf("restored keys %v, want %v", sortedKeys(got), want)
		}
		for key, o := range markerSource {
			if got[key].size != int64(len(o.data)) || md5Object(t, to, "back/"+key) != md5Hex(o.data) {
				t.Errorf("%s restored as %d bytes, want the source's %d", key, got[key].size, len(o.data))
			}
		}

		out := filepath.Join(t.TempDir(), "out")
		for _, dry := range []bool{true, false} {
			restoreArgs := append([]string{"restore", "--json", "-c", cfg, "--job", "ledgers", "--to", out}, args...)
			if dry {
				restoreArgs = append(restoreArgs, "--dry-run")
			}
			res = runVoyageur(t, restoreArgs...)
			s := syncSummary(t, res)
			if res.code != 1 || s.Failed != 1 || s.Failures[0].Key != "trailing/" || !strings.Contains(s.Failures[0].Error, "holds data") {
				t.Errorf("restore to a directory (dry run %v): exit %d %+v, want trailing/ failed as a marker holding data", dry, res.code, s)
			}
		}
		if st, err := os.Stat(filepath.Join(out, "folder")); err != nil || !st.IsDir() {
			t.Errorf("folder/ is not a directory: %v", err)
		}
		if string(readFile(t, filepath.Join(out, "folder/file.txt"))) != "inside\n" {
			t.Error("folder/file.txt not restored")
		}
		if _, err := os.Stat(filepath.Join(out, "trailing")); err == nil {
			t.Error("trailing/ was restored as a directory without its bytes")
		}
	}

	t.Run("encrypted to MinIO", func(t *testing.T) {
		dir := t.TempDir()
		k := newKeys(t, dir, false)
		dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
		cfg := markerConfig(t, dir, src, dst, "", k.encryptionYAML("plain", "zstd"))
		if s := syncJSON(t, 0, "-c", cfg); s.Copied != 4 {
			t.Errorf("sync: %+v", s)
		}
		got := listObjects(t, dst, "r/")
		want := []string{"folder/.voyageur-folder", "folder/file.txt", "plain/readme.txt", "trailing/.voyageur-folder"}
		if !slices.Equal(sortedKeys(got), want) {
			t.Errorf("replica keys %v, want %v", sortedKeys(got), want)
		}
		if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 {
			t.Errorf("second sync copied again: %+v", s)
		}
		if r := runVerify(t, 0, "-c", cfg); r.Source != 4 || r.Replica != 4 {
			t.Errorf("verify by name: %+v", r)
		}
		if r := runVerify(t, 0, "-c", cfg, "--identity", k.identity); r.Deep != 4 {
			t.Errorf("verify with identity: %+v", r)
		}
		restoreChecks(t, cfg, "canada", side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false)}, "--identity", k.identity)
	})

	t.Run("encrypted to fs", func(t *testing.T) {
		dir := t.TempDir()
		k := newKeys(t, dir, false)
		cfg := markerConfig(t, dir, src, side{srv: dstSrv, bucket: "unused", kind: "minio"}, filepath.Join(dir, "fs"), k.encryptionYAML("plain", "zstd"))
		if err := os.MkdirAll(filepath.Join(dir, "fs", "replica"), 0o700); err != nil {
			t.Fatal(err)
		}
		if s := syncJSON(t, 0, "-c", cfg); s.Copied != 4 {
			t.Errorf("sync: %+v", s)
		}
		if _, err := os.Stat(filepath.Join(dir, "fs", "replica", "r", "trailing", ".voyageur-folder")); err != nil {
			t.Errorf("the replica of trailing/: %v", err)
		}
		restoreChecks(t, cfg, "canada", side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false)}, "--identity", k.identity)
	})

	t.Run("plain to MinIO", func(t *testing.T) {
		dir := t.TempDir()
		dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
		cfg := markerConfig(t, dir, src, dst, "", "")
		syncJSON(t, 0, "-c", cfg)
		got := listObjects(t, dst, "r/")
		if !slices.Equal(sortedKeys(got), sortedKeys(markerSource)) || got["folder/"].size != 0 || got["trailing/"].size != 2 {
			t.Errorf("plain replica %v", got)
		}
		restoreChecks(t, cfg, "canada", side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false)})
	})

	t.Run("plain to fs", func(t *testing.T) {
		dir := t.TempDir()
		cfg := markerConfig(t, dir, src, side{srv: dstSrv, bucket: "unused", kind: "minio"}, filepath.Join(dir, "fs"), "")
		if err := os.MkdirAll(filepath.Join(dir, "fs", "replica"), 0o700); err != nil {
			t.Fatal(err)
		}
		s := syncJSON(t, 1, "-c", cfg)
		var failed []string
		for _, f := range s.Failures {
			failed = append(failed, f.Key)
		}
		slices.Sort(failed)
		if !slices.Equal(failed, []string{"folder/", "trailing/"}) || s.Copied != 2 {
			t.Errorf("plain sync to fs: %+v, want the markers failed and the rest copied", s)
		}
		for _, f := range s.Failures {
			if !strings.Contains(f.Error, "folder marker") {
				t.Errorf("%s: %q does not say why", f.Key, f.Error)
			}
		}
	})

	// versitygw's POSIX backend keeps every object as a file and a key
	// ending in "/" as a directory: the store the marker rule is for.
	// Each subtest starts its own gateway, so that a machine without
	// versitygw skips (or, under CI=true, fails) only these subtests.
	startVGW := func(t *testing.T) *versitygwserver.Server {
		vgw := versitygwserver.Start(t)
		addSecret(vgw.SecretKey)
		return vgw
	}
	vgwSide := func(t *testing.T, vgw *versitygwserver.Server) side {
		// minioserver.Server is here only the endpoint and credentials
		// the shared helpers (config, listing, reads) need.
		return side{srv: &minioserver.Server{URL: vgw.URL, Host: vgw.Host, AccessKey: vgw.AccessKey, SecretKey: vgw.SecretKey},
			bucket: vgw.CreateBucket(t), kind: "aws"}
	}

	t.Run("encrypted to versitygw", func(t *testing.T) {
		dir := t.TempDir()
		k := newKeys(t, dir, false)
		vgw := startVGW(t)
		dst := vgwSide(t, vgw)
		cfg := markerConfig(t, dir, src, dst, "", k.encryptionYAML("plain", "zstd"))
		res := runVoyageur(t, "sync", "--json", "-c", cfg)
		if strings.Contains(res.stdout+res.stderr, "DirectoryObjectContainsData") {
			t.Fatalf("versitygw refused a replica:\n%s%s", res.stdout, res.stderr)
		}
		if s := syncSummary(t, res); res.code != 0 || s.Copied != 4 {
			t.Fatalf("sync: exit %d %+v\n%s", res.code, s, res.stderr)
		}
		got := listObjects(t, dst, "r/")
		want := []string{"folder/.voyageur-folder", "folder/file.txt", "plain/readme.txt", "trailing/.voyageur-folder"}
		if !slices.Equal(sortedKeys(got), want) {
			t.Errorf("replica keys %v, want %v", sortedKeys(got), want)
		}
		// On the POSIX backend the replica of trailing/ is a file inside
		// the directory trailing.
		if st, err := os.Stat(filepath.Join(vgw.Dir, dst.bucket, "r", "trailing", ".voyageur-folder")); err != nil || !st.Mode().IsRegular() {
			t.Errorf("the replica of trailing/ on versitygw's disk: %v", err)
		}
		if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 {
			t.Errorf("second sync copied again: %+v", s)
		}
		if r := runVerify(t, 0, "-c", cfg); r.Source != 4 || r.Replica != 4 {
			t.Errorf("verify by name: %+v", r)
		}
		if r := runVerify(t, 0, "-c", cfg, "--identity", k.identity); r.Deep != 4 {
			t.Errorf("verify with identity: %+v", r)
		}
		// Restored to a bucket of another store, from the replica on
		// versitygw: both markers come back as markers, bytes included.
		restoreChecks(t, cfg, "source", side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false)}, "--identity", k.identity)

		// Restored into a versitygw bucket, the empty marker comes back as
		// the directory object folder/; trailing/ cannot be held there
		// (plain objects on a POSIX store, as with encryption: none) and
		// is reported failed, not dropped.
		to := vgwSide(t, vgw)
		res = runVoyageur(t, "restore", "--json", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", "canada:"+to.bucket+"/back/")
		rs := syncSummary(t, res)
		if res.code != 1 || rs.Copied != 3 || rs.Failed != 1 || rs.Failures[0].Key != "trailing/" || !strings.Contains(rs.Failures[0].Error, "DirectoryObjectContainsData") {
			t.Errorf("restore to versitygw: exit %d %+v, want trailing/ failed with DirectoryObjectContainsData and the rest restored", res.code, rs)
		}
		back := listObjects(t, to, "back/")
		if want := []string{"folder/", "folder/file.txt", "plain/readme.txt"}; !slices.Equal(sortedKeys(back), want) || back["folder/"].size != 0 {
			t.Errorf("restored to versitygw %v, want keys %v with the marker folder/ empty", back, want)
		}
	})

	t.Run("plain to versitygw", func(t *testing.T) {
		dir := t.TempDir()
		vgw := startVGW(t)
		dst := vgwSide(t, vgw)
		cfg := markerConfig(t, dir, src, dst, "", "")
		// The documented limit of a store that keeps objects as files: the
		// empty marker becomes a directory, the one holding data is
		// refused and reported failed, never dropped.
		s := syncJSON(t, 1, "-c", cfg)
		if s.Copied != 3 || s.Failed != 1 || s.Failures[0].Key != "trailing/" || !strings.Contains(s.Failures[0].Error, "DirectoryObjectContainsData") {
			t.Errorf("plain sync to versitygw: %+v, want trailing/ failed with DirectoryObjectContainsData and the rest copied", s)
		}
		got := listObjects(t, dst, "r/")
		if want := []string{"folder/", "folder/file.txt", "plain/readme.txt"}; !slices.Equal(sortedKeys(got), want) || got["folder/"].size != 0 {
			t.Errorf("plain replica %v, want keys %v with folder/ empty", got, want)
		}
		if st, err := os.Stat(filepath.Join(vgw.Dir, dst.bucket, "r", "folder")); err != nil || !st.IsDir() {
			t.Errorf("folder/ on versitygw's disk: %v, want a directory", err)
		}
		to := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false)}
		res := runVoyageur(t, "restore", "--json", "-c", cfg, "--job", "ledgers", "--to", "source:"+to.bucket+"/back/")
		if res.code != 0 {
			t.Fatalf("restore to a bucket: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		back := listObjects(t, to, "back/")
		if want := []string{"folder/", "folder/file.txt", "plain/readme.txt"}; !slices.Equal(sortedKeys(back), want) || back["folder/"].size != 0 {
			t.Errorf("restored %v, want keys %v with the marker folder/ empty", back, want)
		}
	})
}
