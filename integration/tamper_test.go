package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// getObject reads one whole object with minio-go.
func getObject(t testing.TB, s side, key string) ([]byte, minio.ObjectInfo) {
	t.Helper()
	o, err := s.client(t).GetObject(context.Background(), s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	info, err := o.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return b, info
}

// overwriteObject replaces key with data in one PUT, keeping its content
// type and user metadata (a careful tamperer keeps voyageur-fp too).
func overwriteObject(t testing.TB, s side, key string, data []byte, info minio.ObjectInfo) {
	t.Helper()
	meta := map[string]string{}
	for k, v := range info.UserMetadata {
		meta[k] = v
	}
	if _, err := s.client(t).PutObject(context.Background(), s.bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: info.ContentType, UserMetadata: meta}); err != nil {
		t.Fatal(err)
	}
}

func corruptKeys(r verifyReport) []string {
	var keys []string
	for _, c := range r.Corrupt {
		keys = append(keys, c.Key)
	}
	slices.Sort(keys)
	return keys
}

// TestVerifyTamperWithoutIdentity: on the replicating host (no identity),
// verify compares each encrypted replica's ETag with the one sync recorded
// in the journal: a byte flip, a truncation and two swapped replicas are
// corrupt. Without a journal it says the comparison was not made.
func TestVerifyTamperWithoutIdentity(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	for i, key := range []string{"flip.csv", "truncate.csv", "swap-a.csv", "swap-b.csv", "intact.csv"} {
		putSource(t, src, key, srcObject{data: []byte(strings.Repeat(key+" row\n", 100+i))})
	}
	putSource(t, src, "big.bin", srcObject{data: randomData(12*mib, 3)})
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: k.encryptionYAML("plain", "zstd")})
	syncJSON(t, 0, "-c", cfg)
	if r := runVerify(t, 0, "-c", cfg); !r.JournalChecked || len(r.Corrupt) != 0 {
		t.Errorf("clean replica: %+v", r)
	}

	b, info := getObject(t, dst, "flip.csv")
	b[len(b)/2] ^= 0x40
	overwriteObject(t, dst, "flip.csv", b, info)
	b, info = getObject(t, dst, "truncate.csv")
	overwriteObject(t, dst, "truncate.csv", b[:len(b)-100], info)
	a, ainfo := getObject(t, dst, "swap-a.csv")
	bb, binfo := getObject(t, dst, "swap-b.csv")
	overwriteObject(t, dst, "swap-a.csv", bb, binfo)
	overwriteObject(t, dst, "swap-b.csv", a, ainfo)

	r := runVerify(t, 1, "-c", cfg)
	if want := []string{"flip.csv", "swap-a.csv", "swap-b.csv", "truncate.csv"}; !slices.Equal(corruptKeys(r), want) || len(r.Stale) != 0 || !r.JournalChecked {
		t.Errorf("verify without identity: corrupt %v, want %v (%+v)", corruptKeys(r), want, r)
	}
	for _, c := range r.Corrupt {
		if !strings.Contains(c.Error, "changed at the destination after sync wrote it") {
			t.Errorf("%s: %q does not say why", c.Key, c.Error)
		}
	}
	human := runVoyageur(t, "verify", "-c", cfg, "--job", "ledgers")
	if !strings.Contains(human.stdout, "corrupt flip.csv") || !strings.Contains(human.stdout, "compared with the journal") {
		t.Errorf("human report:\n%s", human.stdout)
	}
	// With the identity, the same four fail their own checks too.
	if r := runVerify(t, 1, "-c", cfg, "--identity", k.identity); len(r.Corrupt) != 4 {
		t.Errorf("with identity: %+v", r)
	}

	if err := os.Rename(filepath.Join(dir, "journal.db"), filepath.Join(dir, "elsewhere.db")); err != nil {
		t.Fatal(err)
	}
	res := runVoyageur(t, "verify", "--json", "-c", cfg, "--job", "ledgers")
	if res.code != 0 || !strings.Contains(res.stderr, "not compared") || strings.Contains(res.stdout, `"journal_checked":true`) {
		t.Errorf("without a journal: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "journal.db")); err == nil {
		t.Error("verify created a journal")
	}
}

// TestPlainTamperAndStale: with encryption none, a tampered single-part
// replica is corrupt and an out-of-date multipart one stale, with the
// journal and without it (by the replicas' fingerprints); a plain restore
// checks the bytes it reads against the replica's ETag, single-part and
// multipart, and refuses bytes damaged on the way.
func TestPlainTamperAndStale(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	state := map[string]srcObject{
		"small.csv": {data: []byte(strings.Repeat("a,b,c\n", 300))},
		"multi.bin": {data: randomData(12*mib+11, 4)},
		"other.csv": {data: []byte("untouched\n")},
	}
	for key, o := range state {
		putSource(t, src, key, o)
	}
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst})
	syncJSON(t, 0, "-c", cfg)

	t.Run("restore checks the bytes", func(t *testing.T) {
		// A link that damages one byte of every GET answer of one key.
		var damage string
		target, _ := url.Parse(dstSrv.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ModifyResponse = func(resp *http.Response) error {
			if resp.Request.Method != http.MethodGet || !strings.HasSuffix(resp.Request.URL.Path, "/"+damage) || resp.StatusCode != http.StatusOK {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if len(body) > 0 {
				body[len(body)/3] ^= 0x01
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		}
		srv := httptest.NewServer(proxy)
		defer srv.Close()
		viaDir := filepath.Join(dir, "via-proxy")
		os.MkdirAll(viaDir, 0o700)
		bad := dst
		bad.url = srv.URL
		badCfg := writeConfig(t, viaDir, jobConfig{Src: src, Dst: bad})
		for _, key := range []string{"small.csv", "multi.bin"} {
			damage = key
			out := filepath.Join(viaDir, "out-"+key)
			res := runVoyageur(t, "restore", "--json", "-c", badCfg, "--job", "ledgers", "--to", out)
			s := syncSummary(t, res)
			if res.code != 1 || s.Failed != 1 || len(s.Failures) != 1 || s.Failures[0].Key != key ||
				!strings.Contains(s.Failures[0].Error, "do not match the replica's ETag") {
				t.Errorf("restore with %s damaged on the way: exit %d %+v", key, res.code, s)
			}
			if _, err := os.Stat(filepath.Join(out, key)); err == nil {
				t.Errorf("damaged %s was restored", key)
			}
		}
		out := filepath.Join(dir, "clean")
		if res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--to", out); res.code != 0 {
			t.Fatalf("clean restore: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		assertDir(t, out, state)
	})

	b, info := getObject(t, dst, "small.csv")
	b[10] ^= 0x20
	overwriteObject(t, dst, "small.csv", b, info)
	putSource(t, src, "multi.bin", srcObject{data: randomData(12*mib+11, 5)})

	check := func(t *testing.T, journal bool) {
		r := runVerify(t, 1, "-c", cfg)
		if !slices.Equal(corruptKeys(r), []string{"small.csv"}) || !slices.Equal(r.Stale, []string{"multi.bin"}) || r.JournalChecked != journal {
			t.Errorf("plain verify (journal %v): corrupt %v stale %v, want corrupt [small.csv] stale [multi.bin] (%+v)", journal, corruptKeys(r), r.Stale, r)
		}
	}
	t.Run("with the journal", func(t *testing.T) { check(t, true) })
	if err := os.Rename(filepath.Join(dir, "journal.db"), filepath.Join(dir, "elsewhere.db")); err != nil {
		t.Fatal(err)
	}
	t.Run("by fingerprint", func(t *testing.T) { check(t, false) })
}
