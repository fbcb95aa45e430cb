package crypto

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"
)

// agePayload encrypts plain with age itself and returns the file key, the
// payload nonce and the sealed payload.
func agePayload(t *testing.T, plain []byte) (fileKey, nonce, sealed []byte) {
	t.Helper()
	x, _ := testKeys(t)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, x[0].recipient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if fileKey, err = age.DecryptHeader(hdr, x[0].id); err != nil {
		t.Fatal(err)
	}
	rest := buf.Bytes()[len(hdr):]
	return fileKey, rest[:nonceSize], rest[nonceSize:]
}

// TestPayloadAgainstAge opens payloads age encrypted, whole and from every
// chunk on, and through ReaderAt, and checks the plaintext is what age
// itself decrypts; an altered byte, a wrong chunk index and a payload cut
// on a chunk boundary (its new final chunk lacks the last-chunk flag) fail.
func TestPayloadAgainstAge(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 7, 4 * ChunkSize} {
		plain := randomData(n, uint64(n)+1)
		fileKey, nonce, sealed := agePayload(t, plain)
		p, err := NewPayload(fileKey, nonce, int64(len(sealed)))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if p.PlainSize() != int64(n) {
			t.Fatalf("%d bytes: PlainSize %d", n, p.PlainSize())
		}
		got, err := p.OpenChunks(nil, sealed, 0)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: whole payload: %v, equal %v", n, err, bytes.Equal(got, plain))
		}
		for c := range p.Chunks() {
			got, err := p.OpenChunks([]byte("x"), sealed[c*EncChunkSize:], c)
			if err != nil || !bytes.Equal(got[1:], plain[c*ChunkSize:]) || got[0] != 'x' {
				t.Fatalf("%d bytes from chunk %d: %v", n, c, err)
			}
			if c > 0 {
				if _, err := p.OpenChunks(nil, sealed[c*EncChunkSize:], c-1); err == nil {
					t.Fatalf("%d bytes: chunk %d opened as chunk %d", n, c, c-1)
				}
			}
		}
		bad := bytes.Clone(sealed)
		bad[len(bad)/2] ^= 1
		if _, err := p.OpenChunks(nil, bad, 0); err == nil {
			t.Fatalf("%d bytes: an altered payload opened", n)
		}
		if _, err := p.OpenChunks(nil, sealed[:len(sealed)-1], 0); err == nil {
			t.Fatalf("%d bytes: a payload a byte short opened", n)
		}
		if n > ChunkSize {
			cut := sealed[:EncChunkSize]
			q, err := NewPayload(fileKey, nonce, int64(len(cut)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := q.OpenChunks(nil, cut, 0); err == nil {
				t.Fatalf("%d bytes: a payload cut to its first chunk opened", n)
			}
		}
		// ReaderAt against the whole plaintext, across chunk boundaries.
		ra := p.ReaderAt(bytes.NewReader(sealed))
		for _, r := range [][2]int{{0, n}, {n / 3, n / 2}, {max(n-5, 0), 5}, {ChunkSize - 2, 4}} {
			off, k := min(r[0], n), r[1]
			buf := make([]byte, k)
			got, err := ra.ReadAt(buf, int64(off))
			want := plain[off:min(off+k, n)]
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:got], want) || (got < k && err != io.EOF) {
				t.Fatalf("%d bytes: ReadAt(%d, %d): %d, %v", n, k, off, got, err)
			}
		}
	}
	if _, err := NewPayload(make([]byte, 16), make([]byte, 16), EncChunkSize+16); err == nil {
		t.Fatal("a payload whose final chunk is empty was accepted")
	}
}
