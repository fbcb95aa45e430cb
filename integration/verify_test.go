package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
)

type verifyReport struct {
	Source  int      `json:"source_objects"`
	Replica int      `json:"replica_objects"`
	Missing []string `json:"missing"`
	Extra   []string `json:"extra"`
	Stale   []string `json:"stale"`
	Deep    int      `json:"deep_checked"`
	Corrupt []struct {
		Key, Error string
	} `json:"corrupt"`
	JournalChecked bool `json:"journal_checked"`
}

func runVerify(t testing.TB, wantCode int, args ...string) verifyReport {
	t.Helper()
	res := runVoyageur(t, append([]string{"verify", "--json", "--job", "ledgers"}, args...)...)
	if res.code != wantCode {
		t.Fatalf("verify %v: exit %d, want %d\n%s\n%s", args, res.code, wantCode, res.stdout, res.stderr)
	}
	var r verifyReport
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("verify --json printed %q: %v", res.stdout, err)
	}
	return r
}

// TestVerify: verify finds a tampered replica, a missing one, a stale one
// and an object never replicated; by name without the identity, by content
// with it.
func TestVerify(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	for i := range 20 {
		putSource(t, src, fmt.Sprintf("a/%02d.csv", i), srcObject{data: []byte(strings.Repeat(fmt.Sprintf("row %d\n", i), 50+i)), contentType: "text/csv"})
	}
	putSource(t, src, "big/archive.bin", srcObject{data: randomData(12*mib, 5)})
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
	syncJSON(t, 0, "-c", cfg)

	if r := runVerify(t, 0, "-c", cfg, "--identity", k.identity); r.Source != 21 || r.Replica != 21 || r.Deep != 21 {
		t.Errorf("clean replica: %+v", r)
	}
	if r := runVerify(t, 0, "-c", cfg); r.Source != 21 || r.Deep != 0 {
		t.Errorf("clean replica by name: %+v", r)
	}

	secret := readFile(t, k.nameSecret)
	name := func(key string) string { return crypto.HashedName(secret, key) }
	ctx := context.Background()
	c := dst.client(t)
	// Tamper with one replica: flip a byte in its last chunk.
	obj, err := c.GetObject(ctx, dst.bucket, name("a/03.csv"), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 0x01
	if _, err := c.PutObject(ctx, dst.bucket, name("a/03.csv"), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveObject(ctx, dst.bucket, name("a/07.csv"), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	putSource(t, src, "a/09.csv", srcObject{data: []byte("changed after the sync\n"), contentType: "text/csv"})
	putSource(t, src, "new.csv", srcObject{data: []byte("never replicated\n"), contentType: "text/csv"})

	r := runVerify(t, 1, "-c", cfg, "--identity", k.identity)
	if !slices.Equal(r.Missing, []string{"a/07.csv", "new.csv"}) || !slices.Equal(r.Stale, []string{"a/09.csv"}) ||
		len(r.Extra) != 0 || len(r.Corrupt) != 1 || r.Corrupt[0].Key != "a/03.csv" {
		t.Errorf("with identity: %+v", r)
	}
	r = runVerify(t, 1, "-c", cfg)
	if !slices.Equal(r.Missing, []string{"a/07.csv", "new.csv"}) || len(r.Extra) != 0 {
		t.Errorf("by name: %+v", r)
	}
	if r = runVerify(t, 1, "-c", cfg, "--identity", k.identity, "--sample", "3"); r.Deep != 3 {
		t.Errorf("--sample 3 compared %d objects", r.Deep)
	}
	res := runVoyageur(t, "verify", "-c", cfg, "--job", "ledgers", "--identity", k.identity)
	for _, want := range []string{"missing a/07.csv", "stale   a/09.csv", "corrupt a/03.csv"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("human report lacks %q:\n%s", want, res.stdout)
		}
	}
}
