package crypto

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

func TestRoundTrip(t *testing.T) {
	x, _ := testKeys(t)
	sizes := []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, partSize - 1, partSize, partSize + 1, 2*partSize + FrameSize + 7}
	for i, size := range sizes {
		for _, c := range []Compression{{Zstd: true}, {Zstd: false}} {
			kind, data := "random", randomData(size, uint64(size))
			if i%2 == 0 {
				kind, data = "csv", csvData(size, uint64(size))
			}
			t.Run(fmt.Sprintf("%d/%s/zstd=%v", size, kind, c.Zstd), func(t *testing.T) {
				w := newTestWriter(t, c, int64(size))
				one, err := w.Encode(data)
				if err != nil {
					t.Fatal(err)
				}
				multi, _, starts := encodeParts(t, w, data, partSize)
				if want := (size + partSize - 1) / partSize; len(starts) != max(want, 1) {
					t.Fatalf("%d parts, want %d", len(starts), want)
				}
				for name, object := range map[string][]byte{"encode": one, "parts": multi} {
					var out bytes.Buffer
					m, tr, err := Decrypt(bytes.NewReader(object), &out, x[0].id)
					if err != nil {
						t.Fatalf("%s: Decrypt: %v", name, err)
					}
					if !bytes.Equal(out.Bytes(), data) {
						t.Fatalf("%s: Decrypt returned different plaintext", name)
					}
					if m.Key != "ledgers/2024/Q1 relevé.csv" || m.Size != int64(size) || m.Metadata["owner"] != "finance" {
						t.Fatalf("%s: meta %+v", name, m)
					}
					if tr.Size != int64(size) || tr.SHA256 != sha256.Sum256(data) {
						t.Fatalf("%s: trailer %+v", name, tr)
					}
					if name == "parts" && len(tr.Index) != len(starts) {
						t.Fatalf("index has %d entries, want %d", len(tr.Index), len(starts))
					}
					if !bytes.Equal(ageZstd(t, object, x[0].id), data) {
						t.Fatalf("%s: age.Decrypt + zstd returned different plaintext", name)
					}
					if !bytes.Equal(cliDecrypt(t, object, x[0].file), data) {
						t.Fatalf("%s: age -d | zstd -d returned different plaintext", name)
					}
				}
			})
		}
	}
}

// TestRangedRestore restores from every index entry with age.DecryptReaderAt
// and a streaming zstd decoder, as a third-party ranged restore would.
func TestRangedRestore(t *testing.T) {
	x, _ := testKeys(t)
	data := csvData(3*partSize+100, 7)
	w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)))
	object, _, _ := encodeParts(t, w, data, partSize)
	var out bytes.Buffer
	_, tr, err := Decrypt(bytes.NewReader(object), &out, x[0].id)
	if err != nil {
		t.Fatal(err)
	}
	ra, size, err := age.DecryptReaderAt(bytes.NewReader(object), int64(len(object)), x[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Index) != 4 {
		t.Fatalf("index has %d entries, want 4", len(tr.Index))
	}
	for _, e := range tr.Index[1:] {
		d, err := zstd.NewReader(io.NewSectionReader(ra, e.Stream, size-e.Stream))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[e.Plain:]) {
			t.Fatalf("restore from (%d, %d) differs", e.Plain, e.Stream)
		}
	}
}

func TestRecipients(t *testing.T) {
	x, pq := testKeys(t)
	data := csvData(300<<10, 1)
	t.Run("several X25519", func(t *testing.T) {
		w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)), x[0].recipient, x[1].recipient)
		object, err := w.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range x {
			var out bytes.Buffer
			if _, _, err := Decrypt(bytes.NewReader(object), &out, k.id); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("identity %d: %v", i, err)
			}
			if !bytes.Equal(cliDecrypt(t, object, k.file), data) {
				t.Fatalf("identity %d: CLI output differs", i)
			}
		}
	})
	t.Run("hybrid post-quantum", func(t *testing.T) {
		w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)), pq[0].recipient, pq[1].recipient)
		object, _, _ := encodeParts(t, w, data, 100<<10)
		for i, k := range pq {
			var out bytes.Buffer
			if _, _, err := Decrypt(bytes.NewReader(object), &out, k.id); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("identity %d: %v", i, err)
			}
			if !bytes.Equal(ageZstd(t, object, k.id), data) {
				t.Fatalf("identity %d: age.Decrypt output differs", i)
			}
		}
		if _, _, err := Decrypt(bytes.NewReader(object), io.Discard, x[0].id); err == nil {
			t.Fatal("X25519 identity decrypted a post-quantum file")
		}
	})
	t.Run("mixing post-quantum and X25519", func(t *testing.T) {
		_, err := NewWriter(Options{Recipients: []age.Recipient{pq[0].recipient, x[0].recipient}}, Meta{})
		if err == nil || !strings.Contains(err.Error(), "post-quantum") {
			t.Fatalf("got %v, want an error about mixing post-quantum and classic recipients", err)
		}
	})
	t.Run("no recipients", func(t *testing.T) {
		if _, err := NewWriter(Options{}, Meta{}); err == nil {
			t.Fatal("NewWriter without recipients succeeded")
		}
	})
}

func TestHeaderVerifiesWithAge(t *testing.T) {
	x, pq := testKeys(t)
	for _, ks := range [][2]key{x, pq} {
		w := newTestWriter(t, Compression{}, 0, ks[0].recipient, ks[1].recipient)
		object, err := w.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := age.ExtractHeader(bytes.NewReader(object))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hdr, w.st.Header) {
			t.Fatal("age re-encodes the header differently")
		}
		for _, k := range ks {
			fk, err := age.DecryptHeader(hdr, k.id)
			if err != nil || !bytes.Equal(fk, w.st.FileKey) {
				t.Fatalf("DecryptHeader: %v", err)
			}
		}
		bad := bytes.Clone(hdr)
		bad[len(ageIntro)+3] ^= 1 // inside the first stanza type
		if _, err := age.DecryptHeader(bad, ks[0].id); err == nil {
			t.Fatal("tampered header accepted")
		}
	}
}

func TestDeterminism(t *testing.T) {
	data := csvData(2*partSize+12345, 3)
	for _, c := range []Compression{{Zstd: true, Level: 1}, {Zstd: true}, {Zstd: false}} {
		t.Run(fmt.Sprintf("zstd=%v level=%d", c.Zstd, c.Level), func(t *testing.T) {
			w := newTestWriter(t, c, int64(len(data)))
			_, sealed, starts := encodeParts(t, w, data, partSize)
			_, again, _ := encodeParts(t, w, data, partSize)
			state, err := w.State()
			if err != nil {
				t.Fatal(err)
			}
			r, err := ResumeWriter(state)
			if err != nil {
				t.Fatal(err)
			}
			_, resumed, _ := encodeParts(t, r, data, partSize)
			for i := range sealed {
				if !bytes.Equal(sealed[i], again[i]) || !bytes.Equal(sealed[i], resumed[i]) {
					t.Fatalf("part %d differs between runs", i)
				}
			}
			// Re-produce only the middle part from its checkpointed boundary.
			mid := data[partSize : 2*partSize]
			comp, err := r.Compress(mid)
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := r.Seal(nil, starts[1], mid, comp, false, nil)
			if err != nil || !bytes.Equal(out, sealed[1]) {
				t.Fatalf("re-produced part 1 differs: %v", err)
			}
		})
	}
}

func TestCompressDeterministic(t *testing.T) {
	data := csvData(FrameSize+1000, 9)
	w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)))
	want, err := w.Compress(data)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got, err := w.Compress(data); err != nil || !bytes.Equal(got, want) {
				t.Errorf("concurrent Compress differs: %v", err)
			}
		})
	}
	wg.Wait()
	single, err := zstd.NewWriter(nil, append(encoderOptions(3), zstd.WithEncoderConcurrency(1))...)
	if err != nil {
		t.Fatal(err)
	}
	got := single.EncodeAll(data[FrameSize:], single.EncodeAll(data[:FrameSize], nil))
	if !bytes.Equal(got, want) {
		t.Fatal("an encoder with concurrency 1 compresses differently")
	}
}

// TestLowerEncoderMemSameOutput shows that the lower-memory encoder of
// encoderOptions compresses frames exactly as the full-memory one: the
// option is not part of the format.
func TestLowerEncoderMemSameOutput(t *testing.T) {
	inputs := map[string][]byte{
		"csv":    csvData(FrameSize, 5),
		"random": randomData(FrameSize, 8),
		"mixed":  append(csvData(FrameSize/2, 6), randomData(FrameSize/2, 9)...),
		"short":  csvData(100<<10, 7),
	}
	for _, level := range []int{1, 3, 7, 19} {
		low, err := zstd.NewWriter(nil, encoderOptions(level)...)
		if err != nil {
			t.Fatal(err)
		}
		full, err := zstd.NewWriter(nil, append(encoderOptions(level), zstd.WithLowerEncoderMem(false))...)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range inputs {
			if !bytes.Equal(low.EncodeAll(data, nil), full.EncodeAll(data, nil)) {
				t.Errorf("level %d, %s: the lower-memory encoder's frame differs", level, name)
			}
		}
	}
}

func TestResumeProducerChanged(t *testing.T) {
	w := newTestWriter(t, Compression{Zstd: true}, 10)
	state, err := w.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new string }{
		{"github.com/klauspost/compress@", "github.com/klauspost/compress@v0.0.1-"},
		{"zstd-level-3", "zstd-level-4"},
	} {
		altered := bytes.Replace(state, []byte(tc.old), []byte(tc.new), 1)
		if bytes.Equal(altered, state) {
			t.Fatalf("state has no %q", tc.old)
		}
		if _, err := ResumeWriter(altered); !errors.Is(err, ErrProducerChanged) {
			t.Fatalf("%s: got %v, want ErrProducerChanged", tc.new, err)
		}
	}
	level := bytes.Replace(state, []byte(`"level":3`), []byte(`"level":9`), 1)
	if _, err := ResumeWriter(level); !errors.Is(err, ErrProducerChanged) {
		t.Fatalf("changed level: got %v, want ErrProducerChanged", err)
	}
	if _, err := ResumeWriter([]byte("{")); err == nil || errors.Is(err, ErrProducerChanged) {
		t.Fatalf("malformed state: got %v", err)
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func TestDecryptRejects(t *testing.T) {
	x, _ := testKeys(t)
	data := csvData(3*ChunkSize, 5)
	w := newTestWriter(t, Compression{Zstd: false}, int64(len(data)))
	object, err := w.Encode(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("wrong identity", func(t *testing.T) {
		var dst countingWriter
		_, _, err := Decrypt(bytes.NewReader(object), &dst, x[1].id)
		var noMatch *age.NoIdentityMatchError
		if !errors.As(err, &noMatch) || dst.n != 0 {
			t.Fatalf("got %v after %d bytes, want NoIdentityMatchError before any byte", err, dst.n)
		}
		if _, err := ReadMeta(bytes.NewReader(object), x[1].id); err == nil {
			t.Fatal("ReadMeta with a wrong identity succeeded")
		}
	})
	for _, cut := range []int{len(object) - 1, len(object) - 17, len(object) - ChunkSize - 16, len(w.st.Header) + 20} {
		if _, _, err := Decrypt(bytes.NewReader(object[:cut]), io.Discard, x[0].id); err == nil {
			t.Fatalf("truncated at %d of %d: accepted", cut, len(object))
		}
	}
	for _, at := range []int{10, len(w.st.Header) + 3, len(w.st.Header) + 40, len(object) - 5} {
		bad := bytes.Clone(object)
		bad[at] ^= 0x40
		if _, _, err := Decrypt(bytes.NewReader(bad), io.Discard, x[0].id); err == nil {
			t.Fatalf("flipped byte %d: accepted", at)
		}
	}
	if m, err := ReadMeta(bytes.NewReader(object), x[0].id); err != nil || m.Size != int64(len(data)) {
		t.Fatalf("ReadMeta: %+v %v", m, err)
	}
}

// sealStream encrypts an arbitrary zstd stream with w's header, to test the
// frame walker on streams the Writer would never produce.
func sealStream(w *Writer, stream []byte) []byte {
	out := append(bytes.Clone(w.st.Header), w.st.Nonce...)
	return sealChunks(out, w.aead, 0, true, stream)
}

func TestWalkerRejects(t *testing.T) {
	x, _ := testKeys(t)
	data := []byte("hello, voyageur\n")
	w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)))
	meta := appendSkippable(nil, w.st.Meta)
	comp, err := w.Compress(data)
	if err != nil {
		t.Fatal(err)
	}
	trailer := func(size int64, sum [32]byte, index ...IndexEntry) []byte {
		return appendSkippable(nil, marshalTrailer(Trailer{Size: size, SHA256: sum, Index: index}))
	}
	good := trailer(int64(len(data)), sha256.Sum256(data), IndexEntry{})
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	if _, _, err := Decrypt(bytes.NewReader(sealStream(w, cat(meta, comp, good))), io.Discard, x[0].id); err != nil {
		t.Fatalf("valid stream rejected: %v", err)
	}
	unknown := appendSkippable(nil, []byte("XTRA\x01"))
	otherMagic := []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}
	for name, stream := range map[string][]byte{
		"missing trailer":      cat(meta, comp),
		"trailer hash":         cat(meta, comp, trailer(int64(len(data)), sha256.Sum256([]byte("other")), IndexEntry{})),
		"trailer size":         cat(meta, comp, trailer(int64(len(data))+1, sha256.Sum256(data), IndexEntry{})),
		"no meta":              cat(comp, good),
		"meta twice":           cat(meta, meta, comp, good),
		"no data frame":        cat(meta, good),
		"data after trailer":   cat(meta, comp, good, comp),
		"unknown frame":        cat(meta, unknown, comp, good),
		"other skippable":      cat(meta, otherMagic, comp, good),
		"unaligned pad":        cat(meta, appendPad(nil, 20), comp, good),
		"index not frame":      cat(meta, comp, trailer(int64(len(data)), sha256.Sum256(data), IndexEntry{}, IndexEntry{Plain: 3, Stream: ChunkSize})),
		"garbage":              cat(meta, []byte("garbage!"), good),
		"truncated data frame": cat(meta, comp[:len(comp)-1]),
	} {
		var dst countingWriter
		if _, _, err := Decrypt(bytes.NewReader(sealStream(w, stream)), &dst, x[0].id); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEmptyObjectShape(t *testing.T) {
	w := newTestWriter(t, Compression{Zstd: true}, 0)
	comp, err := w.Compress(nil)
	if err != nil {
		t.Fatal(err)
	}
	// One empty single-segment frame: magic, descriptor, FCS 0, last empty Raw block.
	if want := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00}; !bytes.Equal(comp, want) {
		t.Fatalf("empty frame % x, want % x", comp, want)
	}
}

func TestSealRejectsMisuse(t *testing.T) {
	data := randomData(1000, 1)
	w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)))
	comp, err := w.Compress(data)
	if err != nil {
		t.Fatal(err)
	}
	other, err := w.Compress(data[:999])
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"compressed of another part": func() error { _, _, err := w.Seal(nil, w.Start(), data, other, true, nil); return err },
		"not zstd":                   func() error { _, _, err := w.Seal(nil, w.Start(), data, data, true, nil); return err },
		"short of meta size":         func() error { _, _, err := w.Seal(nil, w.Start(), data[:999], other, true, nil); return err },
		"bad hash state":             func() error { _, _, err := w.Seal(nil, Boundary{}, data, comp, true, nil); return err },
		"index with first part": func() error {
			_, _, err := w.Seal(nil, w.Start(), data, comp, true, []Boundary{w.Start()})
			return err
		},
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCSVCompressesToLessThanHalf(t *testing.T) {
	data := csvData(30_000_000, 11)
	w := newTestWriter(t, Compression{Zstd: true}, int64(len(data)))
	comp, err := w.Compress(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("30 MB CSV ledger: %d compressed bytes (%.1f%%)", len(comp), 100*float64(len(comp))/float64(len(data)))
	if len(comp) >= len(data)/2 {
		t.Fatalf("compressed to %d bytes, not less than half of %d", len(comp), len(data))
	}
}

func TestSealedSizeBound(t *testing.T) {
	for _, n := range []int64{0, 1, ChunkSize, partSize, 5 << 30} {
		if b := SealedSizeBound(n); b < n || b > n+n/100+1<<20 {
			t.Errorf("SealedSizeBound(%d) = %d", n, b)
		}
	}
}

// TestCheckCompressed shows what Part.Add's check of caller-compressed
// bytes accepts: whole data frames adding up to the part, skipped block by
// block without being copied.
func TestCheckCompressed(t *testing.T) {
	for _, c := range []Compression{{Zstd: true}, {}} {
		data := append(csvData(FrameSize, 3), randomData(FrameSize/2, 4)...)
		w := newTestWriter(t, c, int64(len(data)))
		good, err := w.Compress(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkCompressed(good, len(data)); err != nil {
			t.Fatalf("zstd %v: good frames refused: %v", c.Zstd, err)
		}
		bad := map[string]struct {
			b []byte
			n int
		}{
			"truncated in a block":  {good[:len(good)-10], len(data)},
			"a frame short":         {good[:len(good)/3], len(data)},
			"sizes do not add up":   {good, len(data) + 1},
			"empty":                 {nil, len(data)},
			"not a frame":           {[]byte("plain text, not zstd"), 20},
			"trailing garbage byte": {append(slices.Clone(good), 0x28), len(data)},
		}
		for name, tc := range bad {
			if err := checkCompressed(tc.b, tc.n); err == nil {
				t.Errorf("zstd %v, %s: accepted", c.Zstd, name)
			}
		}
	}
}
