package crypto

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"
)

// TestRangeReader reads ranges of a multipart replica through
// age.DecryptReaderAt, the TRAILER found from the end and PartSpan, and
// checks them against the source; a whole-object read is checked against
// the TRAILER and one whose data was altered fails, unless unhashed.
// ReadMetaAt finds the META at its start.
func TestRangeReader(t *testing.T) {
	x, _ := testKeys(t)
	for _, c := range []Compression{{Zstd: true}, {}} {
		data := csvData(3*partSize+100, 9)
		w := newTestWriter(t, c, int64(len(data)))
		object, _, _ := encodeParts(t, w, data, partSize)
		ra, size, err := age.DecryptReaderAt(bytes.NewReader(object), int64(len(object)), x[0].id)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := ReadTrailerAt(ra, size)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Size != int64(len(data)) || len(tr.Index) != 4 {
			t.Fatalf("trailer: size %d, %d entries", tr.Size, len(tr.Index))
		}
		if m, err := ReadMetaAt(ra, size); err != nil || m.Size != int64(len(data)) {
			t.Fatalf("META: %+v %v", m, err)
		}
		n := int64(len(data))
		for _, r := range [][2]int64{{0, n}, {0, 1}, {n - 1, 1}, {partSize - 1, 2}, {partSize, partSize}, {2*partSize + 5, 1 << 20}, {100, n - 100}} {
			start, end, plain := PartSpan(tr, size, r[0], r[1])
			if r[1] <= 1<<20 && end-start > 2*size/3 {
				t.Errorf("range %v reads stream [%d, %d) of %d", r, start, end, size)
			}
			got, err := io.ReadAll(NewRangeReader(io.NewSectionReader(ra, start, end-start), tr, plain, r[0], r[1]))
			if err != nil {
				t.Fatalf("range %v: %v", r, err)
			}
			if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
				t.Fatalf("range %v: %d bytes differ from the source", r, len(got))
			}
			// From memory (an io.ByteReader, read without a buffer).
			section := make([]byte, end-start)
			if _, err := ra.ReadAt(section, start); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			got, err = io.ReadAll(NewUnhashedRangeReader(bytes.NewReader(section), tr, plain, r[0], r[1]))
			if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
				t.Fatalf("range %v from memory: %d bytes, %v", r, len(got), err)
			}
		}
		bad := tr
		bad.SHA256[0] ^= 1
		start, end, plain := PartSpan(bad, size, 0, n)
		got, err := io.ReadAll(NewRangeReader(io.NewSectionReader(ra, start, end-start), bad, plain, 0, n))
		if err == nil {
			t.Fatal("a whole-object read with a wrong SHA-256 succeeded")
		}
		if int64(len(got)) >= n {
			t.Fatalf("a failed whole-object read gave all %d bytes", len(got))
		}
		// Without the hash, the wrong SHA-256 goes unseen: the bytes are
		// those age authenticated.
		got, err = io.ReadAll(NewUnhashedRangeReader(io.NewSectionReader(ra, start, end-start), bad, plain, 0, n))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("unhashed whole-object read: %d bytes, %v", len(got), err)
		}
	}
}
