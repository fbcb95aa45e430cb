package crypto

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

const partSize = 5 << 20

// randomData returns n deterministic pseudo-random (incompressible) bytes.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

// csvData returns n bytes of a realistic CSV ledger (truncated mid-row).
func csvData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	currencies := []string{"CAD", "USD", "EUR", "GBP", "JPY", "CHF"}
	descriptions := []string{
		"Virement Interac reçu", "Paiement facture Hydro-Québec", "Achat carte débit - Metro",
		"Dépôt de paie", "Frais mensuels", "Retrait GAB", "Paiement hypothécaire",
		"Remboursement TPS/TVH", "Prélèvement assurance auto", "Achat en ligne - Amazon.ca",
	}
	var buf bytes.Buffer
	buf.Grow(n + 256)
	buf.WriteString("date,account_id,transaction_id,amount,currency,balance,description\n")
	day := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	balance := 10000.0
	for i := 0; buf.Len() < n; i++ {
		if r.IntN(40) == 0 {
			day = day.AddDate(0, 0, 1)
		}
		amount := float64(r.IntN(500000)-250000) / 100
		balance += amount
		fmt.Fprintf(&buf, "%s,CA%08d,TX%012d,%.2f,%s,%.2f,%s\n",
			day.Format("2006-01-02"), 10000000+r.IntN(5000), 700000000000+int64(i),
			amount, currencies[r.IntN(len(currencies))], balance, descriptions[r.IntN(len(descriptions))])
	}
	return buf.Bytes()[:n]
}

type key struct {
	id        age.Identity
	recipient age.Recipient
	file      string // identity file path
}

var (
	keysOnce sync.Once
	x25519   [2]key
	hybrid   [2]key
	keysDir  string
)

// testKeys returns two X25519 and two hybrid keys, generated once with
// GenerateIdentity and loaded back with LoadIdentities.
func testKeys(t testing.TB) ([2]key, [2]key) {
	keysOnce.Do(func() {
		var err error
		if keysDir, err = os.MkdirTemp("", "voyageur-crypto-keys"); err != nil {
			panic(err)
		}
		gen := func(pq bool, i int) key {
			file, rec, err := GenerateIdentity(pq)
			if err != nil {
				panic(err)
			}
			path := filepath.Join(keysDir, fmt.Sprintf("id-%v-%d.txt", pq, i))
			if err := os.WriteFile(path, file, 0o600); err != nil {
				panic(err)
			}
			ids, err := LoadIdentities(path)
			if err != nil {
				panic(err)
			}
			r, err := ParseRecipient(rec)
			if err != nil {
				panic(err)
			}
			return key{id: ids[0], recipient: r, file: path}
		}
		for i := range 2 {
			x25519[i] = gen(false, i)
			hybrid[i] = gen(true, i)
		}
	})
	return x25519, hybrid
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keysDir != "" {
		os.RemoveAll(keysDir)
	}
	os.Exit(code)
}

func newTestWriter(t testing.TB, c Compression, size int64, recipients ...age.Recipient) *Writer {
	t.Helper()
	if len(recipients) == 0 {
		x, _ := testKeys(t)
		recipients = []age.Recipient{x[0].recipient}
	}
	w, err := NewWriter(Options{Recipients: recipients, Compression: c}, Meta{
		Key: "ledgers/2024/Q1 relevé.csv", Size: size, MTime: time.Date(2024, 4, 1, 12, 30, 0, 123, time.UTC),
		ContentType: "text/csv", Metadata: map[string]string{"owner": "finance"}, ETag: `"9b2cf535f27731c974343645a3985328"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// encodeParts produces an object in parts of partSize: all parts compressed
// in parallel goroutines, then sealed in order. It returns the whole object,
// each part's sealed bytes and each part's start boundary.
func encodeParts(t testing.TB, w *Writer, plain []byte, size int) ([]byte, [][]byte, []Boundary) {
	t.Helper()
	var parts [][]byte
	for off := 0; off < len(plain) || off == 0; off += size {
		parts = append(parts, plain[off:min(off+size, len(plain))])
	}
	compressed := make([][]byte, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i := range parts {
		wg.Go(func() { compressed[i], errs[i] = w.Compress(parts[i]) })
	}
	wg.Wait()
	var (
		object []byte
		sealed [][]byte
		starts []Boundary
		b      = w.Start()
	)
	for i := range parts {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		last := i == len(parts)-1
		out, end, err := w.Seal(nil, b, parts[i], compressed[i], last, starts)
		if err != nil {
			t.Fatalf("seal part %d: %v", i, err)
		}
		if bound := SealedSizeBound(int64(len(parts[i]))); int64(len(out)) > bound {
			t.Fatalf("part %d: %d sealed bytes, bound %d", i, len(out), bound)
		}
		if !last && (end.Chunk-b.Chunk)*(ChunkSize+16) != uint64(len(out))-headerLen(w, i) {
			t.Fatalf("part %d is not whole chunks", i)
		}
		starts = append(starts, b)
		sealed = append(sealed, out)
		object = append(object, out...)
		b = end
	}
	return object, sealed, starts
}

func headerLen(w *Writer, part int) uint64 {
	if part > 0 {
		return 0
	}
	return uint64(len(w.st.Header) + nonceSize)
}

// ageZstd decrypts with the age library and decompresses with klauspost's
// streaming decoder (which skips skippable frames), independently of Decrypt.
func ageZstd(t testing.TB, object []byte, id age.Identity) []byte {
	t.Helper()
	r, err := age.Decrypt(bytes.NewReader(object), id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := zstd.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cliTools returns the paths of Debian's age and zstd, or skips (fails when
// CI=true) when they are missing.
func cliTools(t testing.TB) (string, string) {
	t.Helper()
	a, errA := exec.LookPath("/usr/bin/age")
	z, errZ := exec.LookPath("/usr/bin/zstd")
	if errA != nil || errZ != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("age or zstd CLI missing: %v %v", errA, errZ)
		}
		t.Skipf("age or zstd CLI missing: %v %v", errA, errZ)
	}
	return a, z
}

// cliDecrypt runs `age -d -i idfile OBJECT | zstd -d`.
func cliDecrypt(t testing.TB, object []byte, idFile string) []byte {
	t.Helper()
	ageBin, zstdBin := cliTools(t)
	obj := filepath.Join(t.TempDir(), "object.age")
	if err := os.WriteFile(obj, object, 0o600); err != nil {
		t.Fatal(err)
	}
	a := exec.Command(ageBin, "-d", "-i", idFile, obj)
	z := exec.Command(zstdBin, "-d", "-q", "-c")
	var out, aErr, zErr bytes.Buffer
	pipe, err := a.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	z.Stdin, z.Stdout, a.Stderr, z.Stderr = pipe, &out, &aErr, &zErr
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Run(); err != nil {
		t.Fatalf("age -d: %v: %s", err, aErr.Bytes())
	}
	if err := z.Wait(); err != nil {
		t.Fatalf("zstd -d: %v: %s", err, zErr.Bytes())
	}
	return out.Bytes()
}
