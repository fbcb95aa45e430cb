package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestRestoreDoesNotOverwrite: a file or bucket object at the target whose
// content differs from the replica's is left alone and listed, the rest is
// restored, exit 1; --dry-run says "would overwrite"; --overwrite replaces
// it; a re-run over what restore wrote (same content, even with another
// modification time) skips it.
func TestRestoreDoesNotOverwrite(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	state := map[string]srcObject{
		"a.txt":         {data: []byte("the replica's a\n")},
		"b.txt":         {data: []byte("the replica's b\n")},
		"big/large.bin": {data: randomData(12*mib+3, 9)},
	}
	for key, o := range state {
		putSource(t, src, key, o)
	}
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: k.encryptionYAML("plain", "zstd")})
	syncJSON(t, 0, "-c", cfg)

	restore := func(t *testing.T, want int, args ...string) (result, []string) {
		t.Helper()
		res := runVoyageur(t, append([]string{"restore", "--json", "-c", cfg, "--job", "ledgers", "--identity", k.identity}, args...)...)
		if res.code != want {
			t.Fatalf("restore %v: exit %d, want %d\n%s\n%s", args, res.code, want, res.stdout, res.stderr)
		}
		var failed []string
		for _, f := range syncSummary(t, res).Failures {
			failed = append(failed, f.Key+": "+f.Error)
		}
		return res, failed
	}

	t.Run("to a directory", func(t *testing.T) {
		out := filepath.Join(dir, "out")
		restore(t, 0, "--to", out)
		assertDir(t, out, state)
		mine := []byte("the operator's own a, not in the replica\n")
		if err := os.WriteFile(filepath.Join(out, "a.txt"), mine, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(out, "b.txt"))

		res, failed := restore(t, 1, "--to", out, "--dry-run")
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "a.txt: would overwrite") {
			t.Errorf("dry run failures %q, want a.txt listed as would overwrite", failed)
		}
		if _, err := os.Stat(filepath.Join(out, "b.txt")); err == nil {
			t.Error("the dry run restored b.txt")
		}
		res, _ = restore(t, 0, "--to", out, "--dry-run", "--overwrite")
		if !strings.Contains(res.stderr, "would overwrite") || !strings.Contains(res.stderr, "a.txt") {
			t.Errorf("dry run with --overwrite does not say would overwrite a.txt:\n%s", res.stderr)
		}

		res, failed = restore(t, 1, "--to", out)
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "a.txt: not overwritten") || !strings.Contains(failed[0], "--overwrite") {
			t.Errorf("failures %q, want a.txt listed as not overwritten", failed)
		}
		if s := syncSummary(t, res); s.Copied != 1 || s.Skipped != 1 {
			t.Errorf("summary %+v, want b.txt restored and big/large.bin skipped", s)
		}
		if got := readFile(t, filepath.Join(out, "a.txt")); string(got) != string(mine) {
			t.Errorf("a.txt was replaced: %q", got)
		}
		human := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", out)
		if human.code != 1 || !strings.Contains(human.stdout, "failed a.txt: not overwritten") {
			t.Errorf("human summary: exit %d\n%s", human.code, human.stdout)
		}

		restore(t, 0, "--to", out, "--overwrite")
		assertDir(t, out, state)

		// Same content with another modification time is not other data.
		old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(out, "b.txt"), old, old); err != nil {
			t.Fatal(err)
		}
		res, _ = restore(t, 0, "--to", out)
		if s := syncSummary(t, res); s.Skipped != 3 || s.Copied != 0 {
			t.Errorf("re-run over restored files: %+v, want all 3 skipped", s)
		}
	})

	t.Run("to a bucket", func(t *testing.T) {
		to := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false)}
		theirs := "someone else's object\n"
		if _, err := to.client(t).PutObject(context.Background(), to.bucket, "r/a.txt", strings.NewReader(theirs), int64(len(theirs)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		_, failed := restore(t, 1, "--to", "canada:"+to.bucket+"/r/")
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "a.txt: not overwritten") {
			t.Errorf("failures %q", failed)
		}
		if md5Object(t, to, "r/a.txt") != md5Hex([]byte(theirs)) {
			t.Error("the bucket's a.txt was replaced")
		}
		if md5Object(t, to, "r/b.txt") != md5Hex(state["b.txt"].data) {
			t.Error("b.txt was not restored")
		}
		restore(t, 0, "--to", "canada:"+to.bucket+"/r/", "--overwrite")
		if md5Object(t, to, "r/a.txt") != md5Hex(state["a.txt"].data) {
			t.Error("--overwrite did not replace a.txt")
		}
		res, _ := restore(t, 0, "--to", "canada:"+to.bucket+"/r/")
		if s := syncSummary(t, res); s.Skipped != 3 || s.Copied != 0 {
			t.Errorf("re-run to the bucket: %+v, want all 3 skipped", s)
		}
	})
}
