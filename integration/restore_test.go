package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator"
)

// srcObject is one object of a source state: bytes, content type, metadata.
type srcObject struct {
	data        []byte
	contentType string
	meta        map[string]string
}

func putSource(t testing.TB, s side, key string, o srcObject) {
	t.Helper()
	_, err := s.client(t).PutObject(context.Background(), s.bucket, key, bytes.NewReader(o.data), int64(len(o.data)),
		minio.PutObjectOptions{ContentType: o.contentType, UserMetadata: o.meta})
	if err != nil {
		t.Fatal(err)
	}
}

// assertDir checks that dir holds exactly the state's objects.
func assertDir(t testing.TB, dir string, state map[string]srcObject) {
	t.Helper()
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(got)
	if want := sortedKeys(state); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("restored files:\n%v\nwant:\n%v", got, want)
	}
	for k, o := range state {
		if b := readFile(t, filepath.Join(dir, k)); !bytes.Equal(b, o.data) {
			t.Errorf("%s: restored %d bytes differ from the %d source bytes", k, len(b), len(o.data))
		}
	}
}

// TestDisasterRecoveryDrill: sync encrypted with hashed names into a
// versioned destination, change and delete, sync again; lose the journal
// and the source; restore latest, as of the first state, by prefix, to a
// directory and to a bucket; refuse a wrong identity and crafted names;
// resume an interrupted restore.
func TestDisasterRecoveryDrill(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, true), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)

	first := map[string]srcObject{
		"ledgers/2026-11-23.csv":   {[]byte("date,amount\n2026-11-23,10.00\n"), "text/csv", map[string]string{"desk": "treasury"}},
		"ledgers/2026-11-24.csv":   {[]byte("date,amount\n2026-11-24,12.50\n"), "text/csv", map[string]string{"desk": "treasury"}},
		"statements/acme/nov.pdf":  {randomData(200_000, 1), "application/pdf", map[string]string{"client": "acme"}},
		"archive/2026-q3.tar":      {randomData(12*mib+5, 2), "application/x-tar", nil},
		"to-delete/old-report.txt": {[]byte("obsolete"), "text/plain", nil},
		"empty.marker":             {nil, "application/octet-stream", nil},
	}
	for key, o := range first {
		putSource(t, src, key, o)
	}
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "vault/", Deletes: "propagate", MaxDelete: "50%",
		ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != int64(len(first)) {
		t.Fatalf("first sync: %+v", s)
	}
	time.Sleep(1100 * time.Millisecond) // the destination's clock has 1 s resolution at worst
	asOf := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(asOf) + 1100*time.Millisecond)

	second := map[string]srcObject{}
	for key, o := range first {
		second[key] = o
	}
	second["ledgers/2026-11-24.csv"] = srcObject{[]byte("date,amount\n2026-11-24,12.50\n2026-11-24,99.99\n"), "text/csv", map[string]string{"desk": "treasury", "revision": "2"}}
	second["ledgers/2026-11-25.csv"] = srcObject{[]byte("date,amount\n2026-11-25,1.00\n"), "text/csv", nil}
	delete(second, "to-delete/old-report.txt")
	putSource(t, src, "ledgers/2026-11-24.csv", second["ledgers/2026-11-24.csv"])
	putSource(t, src, "ledgers/2026-11-25.csv", second["ledgers/2026-11-25.csv"])
	if err := src.client(t).RemoveObject(context.Background(), src.bucket, "to-delete/old-report.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 2 || s.Deleted != 1 {
		t.Fatalf("second sync: %+v", s)
	}

	srcTimes := map[string]time.Time{}
	for key := range second {
		info, err := src.client(t).StatObject(context.Background(), src.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srcTimes[key] = info.LastModified
	}

	// The disaster: the journal and the source are gone.
	if err := os.Remove(filepath.Join(dir, "journal.db")); err != nil {
		t.Fatal(err)
	}
	srcSrv.AWS(t, "s3", "rb", "--force", "s3://"+src.bucket)
	srcSrv.Stop()

	restore := func(t *testing.T, want int, args ...string) replicator.Summary {
		t.Helper()
		res := runVoyageur(t, append([]string{"restore", "--json", "-c", cfg, "--job", "ledgers"}, args...)...)
		if res.code != want {
			t.Fatalf("restore %v: exit %d, want %d\n%s\n%s", args, res.code, want, res.stdout, res.stderr)
		}
		return syncSummary(t, res)
	}

	t.Run("latest to a directory", func(t *testing.T) {
		out := filepath.Join(dir, "latest")
		if s := restore(t, 0, "--identity", k.identity, "--to", out, "--dry-run"); s.Copied != int64(len(second)) {
			t.Errorf("dry run: %+v", s)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("a dry run created the target directory")
		}
		s := restore(t, 0, "--identity", k.identity, "--to", out)
		if s.Copied != int64(len(second)) || s.Failed != 0 {
			t.Errorf("summary %+v", s)
		}
		assertDir(t, out, second)
		for key, mtime := range srcTimes {
			if st, err := os.Stat(filepath.Join(out, key)); err != nil || !st.ModTime().Equal(mtime) {
				t.Errorf("%s: restored modification time %v, want the source's %v", key, st.ModTime(), mtime)
			}
		}
	})

	t.Run("latest to a fresh bucket", func(t *testing.T) {
		fresh := dstSrv.CreateBucket(t, false)
		s := restore(t, 0, "--identity", k.identity, "--to", "canada:"+fresh+"/recovered/")
		if s.Copied != int64(len(second)) {
			t.Errorf("summary %+v", s)
		}
		to := side{srv: dstSrv, bucket: fresh}
		got := listObjects(t, to, "recovered/")
		if strings.Join(sortedKeys(got), ",") != strings.Join(sortedKeys(second), ",") {
			t.Fatalf("restored keys %v", sortedKeys(got))
		}
		for key, o := range second {
			st := statObject(t, to, "recovered/"+key)
			if st.contentType != o.contentType || fmt.Sprint(st.meta) != fmt.Sprint(lowerMeta(o.meta)) {
				t.Errorf("%s: content type %q metadata %v, want %q %v", key, st.contentType, st.meta, o.contentType, o.meta)
			}
			if len(o.data) > 0 && md5Object(t, to, "recovered/"+key) != md5Hex(o.data) {
				t.Errorf("%s: restored bytes differ", key)
			}
		}
	})

	t.Run("as of the first state", func(t *testing.T) {
		out := filepath.Join(dir, "as-of")
		s := restore(t, 0, "--identity", k.identity, "--to", out, "--as-of", asOf.Format(time.RFC3339))
		if s.Copied != int64(len(first)) {
			t.Errorf("summary %+v", s)
		}
		assertDir(t, out, first)
		ls := runVoyageur(t, "ls", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--as-of", asOf.Format(time.RFC3339))
		if ls.code != 0 || !strings.Contains(ls.stdout, "to-delete/old-report.txt") || strings.Contains(ls.stdout, "ledgers/2026-11-25.csv") {
			t.Errorf("ls --as-of: exit %d\n%s%s", ls.code, ls.stdout, ls.stderr)
		}
	})

	t.Run("by original prefix", func(t *testing.T) {
		out := filepath.Join(dir, "prefix")
		s := restore(t, 0, "--identity", k.identity, "--to", out, "--prefix", "ledgers/")
		want := map[string]srcObject{}
		for key, o := range second {
			if strings.HasPrefix(key, "ledgers/") {
				want[key] = o
			}
		}
		if s.Copied != int64(len(want)) {
			t.Errorf("summary %+v", s)
		}
		assertDir(t, out, want)

		// The rest, as a re-run of an interrupted restore: finished files
		// are skipped, not rewritten.
		inode := func(p string) uint64 {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			return st.Sys().(*syscall.Stat_t).Ino
		}
		before := inode(filepath.Join(out, "ledgers/2026-11-24.csv"))
		s = restore(t, 0, "--identity", k.identity, "--to", out)
		if s.Skipped != int64(len(want)) || s.Copied != int64(len(second)-len(want)) {
			t.Errorf("re-run: %+v, want %d skipped and %d restored", s, len(want), len(second)-len(want))
		}
		if inode(filepath.Join(out, "ledgers/2026-11-24.csv")) != before {
			t.Error("a finished file was rewritten")
		}
		assertDir(t, out, second)
	})

	t.Run("a mistyped endpoint is not a directory", func(t *testing.T) {
		res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", "canda:restored")
		if res.code != 2 || !strings.Contains(res.stderr, `no endpoint "canda"`) {
			t.Errorf("exit %d\n%s", res.code, res.stderr)
		}
		if _, err := os.Stat("canda:restored"); err == nil {
			t.Error("a directory was created for the mistyped endpoint")
		}
	})

	t.Run("ls", func(t *testing.T) {
		res := runVoyageur(t, "ls", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--prefix", "statements/")
		if res.code != 0 || !strings.Contains(res.stdout, "200000") || !strings.Contains(res.stdout, "statements/acme/nov.pdf") || strings.Contains(res.stdout, "ledgers/") {
			t.Errorf("ls: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		res = runVoyageur(t, "ls", "-c", cfg, "--job", "ledgers")
		if res.code != 2 || !strings.Contains(res.stderr, "identity") {
			t.Errorf("ls of hashed names without identity: exit %d, %s", res.code, res.stderr)
		}
	})

	t.Run("a killed restore resumes", func(t *testing.T) {
		slowDir := filepath.Join(dir, "slow")
		os.MkdirAll(slowDir, 0o700)
		slow := writeConfig(t, slowDir, jobConfig{Src: src, Dst: dst, DstPrefix: "vault/", Bandwidth: "3MiB",
			ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
		out := filepath.Join(dir, "killed")
		cmd := exec.Command(voyageurBin, "restore", "-c", slow, "--job", "ledgers", "--identity", k.identity, "--to", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		small := filepath.Join(out, "ledgers/2026-11-24.csv")
		waitFor(t, 30*time.Second, "the small files to be restored", func() bool {
			_, err := os.Stat(small)
			return err == nil
		})
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		checkOutput(t, "restore (killed)", stderr.String())
		if _, err := os.Stat(filepath.Join(out, "archive/2026-q3.tar")); err == nil {
			t.Fatal("the archive was restored before the kill: nothing was interrupted")
		}
		st, err := os.Stat(small)
		if err != nil {
			t.Fatal(err)
		}
		s := restore(t, 0, "--identity", k.identity, "--to", out)
		if s.Copied < 1 || s.Skipped < 1 || s.Copied+s.Skipped != int64(len(second)) {
			t.Errorf("re-run: %+v", s)
		}
		if st2, _ := os.Stat(small); st2.Sys().(*syscall.Stat_t).Ino != st.Sys().(*syscall.Stat_t).Ino {
			t.Error("a finished file was rewritten")
		}
		assertDir(t, out, second) // and no temporary file left behind
	})

	t.Run("wrong or missing identity writes nothing", func(t *testing.T) {
		out := filepath.Join(dir, "wrong")
		other := newKeys(t, t.TempDir(), false)
		res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", other.identity, "--to", out)
		if res.code != 1 || !strings.Contains(res.stderr, "identity does not match") {
			t.Errorf("wrong identity: exit %d\n%s", res.code, res.stderr)
		}
		res = runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--to", out)
		if res.code != 2 || !strings.Contains(res.stderr, "--identity") {
			t.Errorf("no identity: exit %d\n%s", res.code, res.stderr)
		}
		entries, _ := os.ReadDir(out)
		if len(entries) != 0 {
			t.Errorf("a failed restore wrote %d entries", len(entries))
		}
	})

	t.Run("crafted names are refused", func(t *testing.T) {
		ids := []string{k.recipient}
		r, err := crypto.ParseRecipient(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"../../escaped.txt", "/etc/voyageur-escaped", "ok/../../escaped2.txt"} {
			w, err := crypto.NewWriter(crypto.Options{Recipients: []age.Recipient{r}, Compression: crypto.Compression{Zstd: true}},
				crypto.Meta{Key: name, Size: 5, MTime: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			b, err := w.Encode([]byte("owned"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = dst.client(t).PutObject(context.Background(), dst.bucket, fmt.Sprintf("vault/crafted-%d.age", i), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
		}
		base := filepath.Join(dir, "jail")
		out := filepath.Join(base, "a", "b")
		// With the name secret, a replica whose name is not the hash of
		// its META key is refused outright.
		res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", out)
		if res.code != 1 || strings.Count(res.stdout, "does not match the key in its META") != 3 {
			t.Errorf("crafted names with the name secret: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
		// Without it (a recovery host may not have it), the names are
		// refused by the target directory.
		if err := os.Rename(k.nameSecret, k.nameSecret+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(k.nameSecret+".away", k.nameSecret)
		res = runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", out)
		if res.code != 1 || strings.Count(res.stdout, "refusing to restore") != 3 {
			t.Errorf("crafted names: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
		for _, p := range []string{filepath.Join(base, "escaped.txt"), filepath.Join(base, "a", "escaped2.txt"), "/etc/voyageur-escaped", filepath.Join(dir, "escaped.txt")} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s was written outside the target", p)
			}
		}
		assertDir(t, out, second)
	})
}

func lowerMeta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

func md5Hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}
