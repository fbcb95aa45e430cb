package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
)

// keys is an identity made by `voyageur keygen` and a name secret.
type keys struct {
	identity, recipient, nameSecret string
}

func newKeys(t testing.TB, dir string, pq bool) keys {
	t.Helper()
	k := keys{identity: filepath.Join(dir, "identity.txt"), nameSecret: filepath.Join(dir, "names.key")}
	args := []string{"keygen", "-o", k.identity}
	if pq {
		args = append(args, "--pq")
	}
	res := runVoyageur(t, args...)
	if res.code != 0 {
		t.Fatalf("keygen: exit %d: %s", res.code, res.stderr)
	}
	k.recipient = strings.TrimSpace(strings.TrimPrefix(res.stderr, "Public key: "))
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(k.nameSecret, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	addSecretFile(t, k.identity)
	addSecretFile(t, k.nameSecret)
	return k
}

func (k keys) encryptionYAML(names, compression string) string {
	return fmt.Sprintf("    encryption: {recipients: [%q], compression: %s, names: %s, name_secret_file: %q}\n", k.recipient, compression, names, k.nameSecret)
}

// requireTool fails under CI (or skips elsewhere) when a CLI is missing.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; make test installs it (apt-get install %s)", name, name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// downloadAll fetches every object under prefix into dir, named by key.
func downloadAll(t testing.TB, s side, prefix, dir string) []string {
	t.Helper()
	var names []string
	for k := range listObjects(t, s, prefix) {
		if strings.Contains(k, "/") {
			t.Fatalf("hashed replica key %q has a path", k)
		}
		if err := s.client(t).FGetObject(context.Background(), s.bucket, prefix+k, filepath.Join(dir, k), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, k)
	}
	return names
}

// decryptWithCLIs runs `age -d -i IDENTITY F | zstd -d > OUT/F` for every
// file in in, the recovery recipe that needs no voyageur.
func decryptWithCLIs(t testing.TB, identity, in, out string) {
	t.Helper()
	requireTool(t, "age")
	requireTool(t, "zstd")
	script := `set -eo pipefail
cd "$1"
for f in *; do age -d -i "$2" "$f" | zstd -d -q > "$3/$f"; done`
	cmd := exec.Command("bash", "-c", script, "decrypt", in, identity, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | zstd -d: %v\n%s", err, b)
	}
}

// TestEncryptedReplica syncs an encrypted job with hashed names and proves
// the replicas decrypt with Debian's age and zstd to the exact source bytes,
// with voyageur's reader too, and that the destination shows nothing of the
// plaintext: no key, path segment, metadata value or source ETag.
func TestEncryptedReplica(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	files := map[string]int{
		"sizes/empty": 0, "sizes/one-byte": 1,
		"sizes/chunk-minus-1": 64<<10 - 1, "sizes/chunk-exact": 64 << 10, "sizes/chunk-plus-1": 64<<10 + 1,
		"sizes/part-minus-1": 5*mib - 1, "sizes/part-exact": 5 * mib, "sizes/part-plus-1": 5*mib + 1,
		"multi/three-parts.bin": 12*mib + 7, "odd keys/unicode-é-漢字.csv": 200, "odd keys/plus+amp&eq=q?.txt": 300,
	}
	for i := range 2000 {
		files[fmt.Sprintf("small/%03d/statement-%d.json", i/100, i)] = 300 + i%700
	}
	for key, n := range files {
		writeFile(t, filepath.Join(dir, "data", key), n, byte(len(key)+n))
	}
	srcSrv.AWS(t, "s3", "cp", "--recursive", "--only-show-errors", filepath.Join(dir, "data"), "s3://"+src.bucket+"/")
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", "--content-type", "text/csv",
		"--metadata", "client-name=Banque-Laurentienne-Secrete", filepath.Join(dir, "data/sizes/one-byte"), "s3://"+src.bucket+"/meta/ledger.csv")
	files["meta/ledger.csv"] = 1

	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, DstPrefix: "vault/", ExtraJobLines: k.encryptionYAML("hashed", "zstd")})
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != int64(len(files)) || s.Failed != 0 {
		t.Fatalf("sync: %+v, want %d copied", s, len(files))
	}
	if s := syncJSON(t, 0, "-c", cfg); s.Copied != 0 {
		t.Errorf("second sync copied %d", s.Copied)
	}

	// A point in time needs a versioned destination: this one is not.
	if res := runVoyageur(t, "ls", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--as-of", time.Now().Format(time.RFC3339)); res.code != 1 || !strings.Contains(res.stderr, "versioning") {
		t.Errorf("ls --as-of on an unversioned destination: exit %d\n%s", res.code, res.stderr)
	}

	// What the provider sees.
	replicas := listObjects(t, dst, "vault/")
	if len(replicas) != len(files) {
		t.Fatalf("%d replicas for %d objects", len(replicas), len(files))
	}
	srcObjs := listObjects(t, src, "")
	var secrets []string
	for key, o := range srcObjs {
		secrets = append(secrets, key, o.etag)
		for _, seg := range strings.Split(key, "/") {
			if len(seg) >= 4 && !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(seg) {
				secrets = append(secrets, seg)
			}
		}
	}
	secrets = append(secrets, "Banque-Laurentienne-Secrete", "text/csv")
	name := regexp.MustCompile(`^[0-9a-f]{64}\.age$`)
	for rk, ro := range replicas {
		if !name.MatchString(rk) {
			t.Errorf("replica name %q is not a hashed name", rk)
		}
		st := statObject(t, dst, "vault/"+rk)
		visible := rk + " " + ro.etag + " " + st.contentType + " " + fmt.Sprint(st.meta)
		for _, s := range secrets {
			if strings.Contains(visible, s) {
				t.Errorf("the destination shows %q in %q", s, visible)
			}
		}
	}
	head := string(dstSrv.AWS(t, "s3api", "head-object", "--bucket", dst.bucket, "--key", "vault/"+crypto.HashedName(readFile(t, k.nameSecret), "meta/ledger.csv")))
	for _, s := range []string{"Banque", "text/csv", "ledger"} {
		if strings.Contains(head, s) {
			t.Errorf("head-object of the replica shows %q:\n%s", s, head)
		}
	}

	// The recovery recipe, without voyageur.
	enc, plain := filepath.Join(dir, "enc"), filepath.Join(dir, "plain")
	for _, d := range []string{enc, plain} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	downloadAll(t, dst, "vault/", enc)
	decryptWithCLIs(t, k.identity, enc, plain)
	secret := readFile(t, k.nameSecret)
	for key := range files {
		src := filepath.Join(dir, "data", key)
		if key == "meta/ledger.csv" {
			src = filepath.Join(dir, "data/sizes/one-byte")
		}
		want := readFile(t, src)
		if got := readFile(t, filepath.Join(plain, crypto.HashedName(secret, key))); !bytes.Equal(got, want) {
			t.Errorf("%s: age -d | zstd -d gives %d bytes, want the %d source bytes", key, len(got), len(want))
		}
	}

	// voyageur's reader (through the age library) checks SHA-256 and gives
	// back the original key, content type and metadata.
	ids, err := crypto.LoadIdentities(k.identity)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(enc, crypto.HashedName(secret, "meta/ledger.csv")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	meta, _, err := crypto.Decrypt(f, &out, ids...)
	if err != nil || meta.Key != "meta/ledger.csv" || meta.ContentType != "text/csv" || meta.Metadata["client-name"] != "Banque-Laurentienne-Secrete" || meta.ETag != srcObjs["meta/ledger.csv"].etag {
		t.Errorf("META: %+v, %v", meta, err)
	}
	for name := range replicas {
		f, err := os.Open(filepath.Join(enc, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := crypto.Decrypt(f, io.Discard, ids...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}

	// A wrong identity is a clear error and yields nothing.
	other := newKeys(t, t.TempDir(), false)
	wrong, err := crypto.LoadIdentities(other.identity)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := os.Open(filepath.Join(enc, crypto.HashedName(secret, "multi/three-parts.bin")))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	out.Reset()
	if _, _, err := crypto.Decrypt(f2, &out, wrong...); err == nil || out.Len() != 0 || !strings.Contains(err.Error(), "identit") {
		t.Errorf("wrong identity: err %v, %d bytes written", err, out.Len())
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeLedgerCSV writes a realistic ledger of about n bytes.
func writeLedgerCSV(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "date,account,counterparty,amount,currency,description")
	descriptions := []string{"Interac e-Transfer", "Wire transfer", "Card purchase", "Payroll deposit", "Mortgage payment", "FX conversion"}
	currencies := []string{"CAD", "USD", "EUR"}
	x := uint64(1)
	for written := 0; written < n; {
		x = x*6364136223846793005 + 1442695040888963407
		line := fmt.Sprintf("2026-%02d-%02d,CA%010d,ACCT-%06d,%d.%02d,%s,%s #%d\n",
			1+x%12, 1+(x>>8)%28, (x>>16)%100000, (x>>20)%5000, (x>>24)%100000, (x>>32)%100,
			currencies[(x>>40)%3], descriptions[(x>>44)%6], (x>>48)%10000)
		written += len(line)
		w.WriteString(line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestEncryptedLedgerCompresses: a 30 MB CSV ledger replica is smaller than
// half the source, and decrypts to it.
func TestEncryptedLedgerCompresses(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	writeLedgerCSV(t, filepath.Join(dir, "ledger.csv"), 30_000_000)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "ledger.csv"), "s3://"+src.bucket+"/ledgers/2026-11-24.csv")
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, PartSize: "8MiB", ExtraJobLines: k.encryptionYAML("plain", "zstd")})
	s := syncJSON(t, 0, "-c", cfg)
	replica := listObjects(t, dst, "")["ledgers/2026-11-24.csv"]
	if s.Copied != 1 || replica.size == 0 || replica.size >= 15_000_000 || s.BytesWritten != replica.size {
		t.Fatalf("replica of a 30 MB ledger is %d bytes (summary %+v); want under half", replica.size, s)
	}
	t.Logf("30 MB ledger → %d bytes (%.1f %%)", replica.size, 100*float64(replica.size)/30e6)
	enc, plain := filepath.Join(dir, "enc"), filepath.Join(dir, "plain")
	os.MkdirAll(enc, 0o700)
	os.MkdirAll(plain, 0o700)
	if err := dst.client(t).FGetObject(context.Background(), dst.bucket, "ledgers/2026-11-24.csv", filepath.Join(enc, "ledger"), minio.GetObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	decryptWithCLIs(t, k.identity, enc, plain)
	if !bytes.Equal(readFile(t, filepath.Join(plain, "ledger")), readFile(t, filepath.Join(dir, "ledger.csv"))) {
		t.Error("the decrypted ledger differs from the source")
	}
	// restore with plain names needs no name secret: the name is the key.
	out := filepath.Join(dir, "restored")
	res := runVoyageur(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", k.identity, "--to", out)
	if res.code != 0 || !bytes.Equal(readFile(t, filepath.Join(out, "ledgers/2026-11-24.csv")), readFile(t, filepath.Join(dir, "ledger.csv"))) {
		t.Errorf("restore: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}

// TestEncryptedCrashResume SIGKILLs an encrypted multi-part upload and
// resumes it: well under 70 % is sent again and the result decrypts exactly
// (post-quantum recipient: decrypted with the age Go library).
func TestEncryptedCrashResume(t *testing.T) {
	for _, pq := range []bool{false, true} {
		t.Run(fmt.Sprintf("pq=%v", pq), func(t *testing.T) { encryptedCrashResume(t, pq) })
	}
}

func encryptedCrashResume(t testing.TB, pq bool) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "aws"}
	dir := t.TempDir()
	k := newKeys(t, dir, pq)
	const size = 50 * mib
	writeFile(t, filepath.Join(dir, "archive.tar"), size, 42)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "archive.tar"), "s3://"+src.bucket+"/archive/2026.tar")
	extra := k.encryptionYAML("hashed", "zstd")
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, Concurrency: 2, Bandwidth: "8MiB", ExtraJobLines: extra})
	cmd, stderr := startSync(t, cfg)
	killAfterParts(t, cmd, dst, 6, stderr)

	cfg = writeConfig(t, dir, jobConfig{Src: src, Dst: dst, Concurrency: 2, ExtraJobLines: extra})
	res := runVoyageur(t, "sync", "--json", "-c", cfg)
	if res.code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	s := syncSummary(t, res)
	replicas := listObjects(t, dst, "")
	if len(replicas) != 1 {
		t.Fatalf("%d replicas", len(replicas))
	}
	var total int64
	for _, o := range replicas {
		total = o.size
	}
	if s.Copied != 1 || float64(s.BytesWritten) >= 0.7*float64(total) || !strings.Contains(res.stderr, "resuming multipart upload") {
		t.Errorf("resume sent %d of %d bytes (%+v); want well under 70 %%\n%s", s.BytesWritten, total, s, res.stderr)
	}
	t.Logf("resume sent %d of %d bytes (%.0f %%)", s.BytesWritten, total, 100*float64(s.BytesWritten)/math.Max(1, float64(total)))
	if up := incompleteUploads(t, dst); len(up) != 0 {
		t.Errorf("incomplete uploads left: %v", up)
	}

	name := crypto.HashedName(readFile(t, k.nameSecret), "archive/2026.tar")
	if got := decryptReplica(t, dst, name, k); !bytes.Equal(got, readFile(t, filepath.Join(dir, "archive.tar"))) {
		t.Fatalf("resumed replica differs from the source (%d bytes)", len(got))
	}
	if !pq {
		enc, plain := filepath.Join(dir, "enc"), filepath.Join(dir, "plain")
		os.MkdirAll(enc, 0o700)
		os.MkdirAll(plain, 0o700)
		downloadAll(t, dst, "", enc)
		decryptWithCLIs(t, k.identity, enc, plain)
		if !bytes.Equal(readFile(t, filepath.Join(plain, name)), readFile(t, filepath.Join(dir, "archive.tar"))) {
			t.Error("age -d | zstd -d of the resumed replica differs from the source")
		}
	}
}
