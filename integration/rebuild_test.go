package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
)

// fingerprintRE is what a replica's x-amz-meta-voyageur-fp holds.
var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// sourceMeta returns a plain replica's user metadata without voyageur's
// fingerprint, which it checks is there.
func sourceMeta(t testing.TB, replica object) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range replica.meta {
		out[k] = v
	}
	if !fingerprintRE.MatchString(out["voyageur-fp"]) {
		t.Errorf("replica metadata %v has no fingerprint", replica.meta)
	}
	delete(out, "voyageur-fp")
	return out
}

func md5hexOf(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// modTimes lists a bucket prefix with each object's LastModified.
func modTimes(t testing.TB, s side, prefix string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	for o := range s.client(t).ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", s.bucket, o.Err)
		}
		out[o.Key] = o.LastModified
	}
	return out
}

// TestJournalRebuild: a sync whose journal file was deleted rebuilds the
// index from the replicas' fingerprints and sends only the one object that
// changed meanwhile, in plain mode and encrypted with hashed names; the
// encrypted replicas show no plaintext fact beside the keyed fingerprint.
func TestJournalRebuild(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	for _, mode := range []string{"plain", "encrypted"} {
		t.Run(mode, func(t *testing.T) {
			src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
			dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
			dir := t.TempDir()
			files := map[string]int{"big/two-parts.bin": 6 * mib, "changed.csv": 2000}
			for i := range 30 {
				files[fmt.Sprintf("ledgers/%02d.csv", i)] = 100 + i*37
			}
			for k, n := range files {
				writeFile(t, filepath.Join(dir, "data", k), n, byte(len(k)+n))
			}
			srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")
			var k keys
			jc := jobConfig{Src: src, Dst: dst, DstPrefix: "replica/"}
			if mode == "encrypted" {
				k = newKeys(t, dir, false)
				jc.ExtraJobLines = k.encryptionYAML("hashed", "zstd")
			}
			cfg := writeConfig(t, dir, jc)
			destKey := func(key string) string {
				if mode == "encrypted" {
					return "replica/" + crypto.HashedName(readFile(t, k.nameSecret), key)
				}
				return "replica/" + key
			}
			if s := syncJSON(t, 0, "-c", cfg); s.Copied != int64(len(files)) {
				t.Fatalf("first sync: %+v, want %d copied", s, len(files))
			}
			before := modTimes(t, dst, "replica/")

			if err := os.Remove(filepath.Join(dir, "journal.db")); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "new.csv"), 3000, 42)
			srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "new.csv"), "s3://"+src.bucket+"/changed.csv")
			time.Sleep(10 * time.Millisecond) // a rewrite shows in LastModified

			s := syncJSON(t, 0, "-c", cfg)
			if s.Copied != 1 || s.Skipped != int64(len(files)-1) || s.Failed != 0 || s.BytesRead != 3000 {
				t.Errorf("sync without the journal: %+v, want 1 copied (3000 bytes read), %d skipped", s, len(files)-1)
			}
			after := modTimes(t, dst, "replica/")
			if len(after) != len(files) {
				t.Errorf("%d replicas for %d objects", len(after), len(files))
			}
			for key := range files {
				rewritten := !after[destKey(key)].Equal(before[destKey(key)])
				if rewritten != (key == "changed.csv") {
					t.Errorf("%s: replica rewritten: %v", key, rewritten)
				}
			}
			// The changed replica is exact.
			want := readFile(t, filepath.Join(dir, "new.csv"))
			if mode == "plain" {
				if got := md5Object(t, dst, destKey("changed.csv")); got != md5hexOf(want) {
					t.Errorf("changed.csv: replica md5 %s", got)
				}
			} else {
				ids, err := crypto.LoadIdentities(k.identity)
				if err != nil {
					t.Fatal(err)
				}
				o, err := dst.client(t).GetObject(context.Background(), dst.bucket, destKey("changed.csv"), minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				meta, _, err := crypto.Decrypt(o, &out, ids...)
				o.Close()
				if err != nil || !bytes.Equal(out.Bytes(), want) || meta.Key != "changed.csv" {
					t.Errorf("changed.csv: decrypted %d bytes, META %+v, %v", out.Len(), meta, err)
				}
				// Beside the bytes, the provider sees only a keyed fingerprint.
				srcObjs := listObjects(t, src, "")
				for key := range files {
					st := statObject(t, dst, destKey(key))
					if len(st.meta) != 1 || !fingerprintRE.MatchString(st.meta["voyageur-fp"]) || st.meta["voyageur-fp"] == srcObjs[key].etag {
						t.Errorf("%s: replica metadata %v", key, st.meta)
					}
				}
			}
			if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 {
				t.Errorf("sync after the rebuild copied %d", s.Copied)
			}
		})
	}
}

// TestJournalRebuildWithoutSecret: an encrypted job with plain names and
// no name secret has no fingerprints: it says so and sends everything.
func TestJournalRebuildWithoutSecret(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	for i := range 3 {
		writeFile(t, filepath.Join(dir, "data", fmt.Sprintf("%d.csv", i)), 100, byte(i))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")
	k := newKeys(t, dir, false)
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst,
		ExtraJobLines: fmt.Sprintf("    encryption: {recipients: [%q], names: plain}\n", k.recipient)})
	syncJSON(t, 0, "-c", cfg)
	if st := statObject(t, dst, "0.csv"); len(st.meta) != 0 {
		t.Errorf("replica without a secret carries %v", st.meta)
	}
	if err := os.Remove(filepath.Join(dir, "journal.db")); err != nil {
		t.Fatal(err)
	}
	res := runVoyageur(t, "sync", "--json", "-c", cfg)
	if s := syncSummary(t, res); res.code != 0 || s.Copied != 3 {
		t.Errorf("sync without the journal: exit %d, %+v", res.code, s)
	}
	if !strings.Contains(res.stderr, "journal rebuilt without fingerprints: every object will be re-sent") {
		t.Errorf("no warning about the missing fingerprints:\n%s", res.stderr)
	}
}

// TestJournalRebuildDeletes: with deletes: propagate, a sync whose journal
// was lost deletes the replicas of the keys deleted at the source
// meanwhile, which the rebuilt index never held: exactly those, with
// nothing written again. Beyond max_delete it deletes nothing and fails;
// the next run, allowed more, deletes them. Objects under the destination
// prefix that name no key of the job (the reserved prefix; with hashed
// names, a name not of the hashed form) or carry no fingerprint are kept.
func TestJournalRebuildDeletes(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	for _, mode := range []string{"plain", "encrypted"} {
		t.Run(mode, func(t *testing.T) {
			src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
			dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
			ctx := context.Background()
			sc := srcSrv.Client(t)
			dir := t.TempDir()
			var names []string
			for i := range 40 {
				key := fmt.Sprintf("ledgers/%02d.csv", i)
				names = append(names, key)
				data := randomData(100+i*13, byte(i))
				if _, err := sc.PutObject(ctx, src.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			proxy := newCountingProxy(t, dstSrv.URL)
			d := dst
			d.url = proxy.url
			jc := jobConfig{Src: src, Dst: d, DstPrefix: "replica/", Deletes: "propagate", MaxDelete: "2"}
			// Not replicas: the reserved prefix, and an object without a
			// fingerprint under a name a key of the job would have.
			foreign := []string{"replica/.voyageur/drills/notes.json", "replica/ledgers/99.csv"}
			destKey := func(key string) string { return "replica/" + key }
			if mode == "encrypted" {
				k := newKeys(t, dir, false)
				jc.ExtraJobLines = k.encryptionYAML("hashed", "zstd")
				foreign = append(foreign, "replica/README.txt")
				destKey = func(key string) string { return "replica/" + crypto.HashedName(readFile(t, k.nameSecret), key) }
			}
			cfg := writeConfig(t, dir, jc)
			if s := syncJSON(t, 0, "-c", cfg); s.Copied != int64(len(names)) {
				t.Fatalf("first sync: %+v", s)
			}
			for _, k := range foreign {
				if _, err := dstSrv.Client(t).PutObject(ctx, dst.bucket, k, strings.NewReader("{}"), 2, minio.PutObjectOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			if err := os.Remove(filepath.Join(dir, "journal.db")); err != nil {
				t.Fatal(err)
			}
			gone := []string{"ledgers/03.csv", "ledgers/17.csv", "ledgers/39.csv"}
			for _, k := range gone {
				if err := sc.RemoveObject(ctx, src.bucket, k, minio.RemoveObjectOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			replica := func() []string { return sortedKeys(listObjects(t, dst, "")) }
			before := replica()

			proxy.reset()
			s := syncJSON(t, 1, "-c", cfg)
			if s.Deleted != 0 || s.Copied != 0 || !strings.Contains(s.Error, "refusing to delete 3 replicas") || proxy.deletes.Load() != 0 || proxy.writes.Load() != 0 {
				t.Errorf("rebuild with 3 deletes over max_delete 2: %+v, %d deletes, %d writes", s, proxy.deletes.Load(), proxy.writes.Load())
			}
			if got := replica(); !slices.Equal(got, before) {
				t.Errorf("a refused rebuild changed the replica: %v, was %v", got, before)
			}

			jc.MaxDelete = "3"
			cfg = writeConfig(t, dir, jc)
			proxy.reset()
			s = syncJSON(t, 0, "-c", cfg)
			if s.Deleted != 3 || s.Copied != 0 || proxy.deletes.Load() != 3 || proxy.writes.Load() != 0 {
				t.Errorf("rebuild allowed 3 deletes: %+v, %d deletes, %d writes; want 3 deleted, nothing written", s, proxy.deletes.Load(), proxy.writes.Load())
			}
			want := slices.Clone(foreign)
			for _, k := range names {
				if !slices.Contains(gone, k) {
					want = append(want, destKey(k))
				}
			}
			slices.Sort(want)
			if got := replica(); !slices.Equal(got, want) {
				t.Errorf("replica holds %v, want %v", got, want)
			}
			if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 || s.Deleted != 0 {
				t.Errorf("sync after the rebuild: %+v", s)
			}
		})
	}
}
