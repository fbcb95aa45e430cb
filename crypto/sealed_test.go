package crypto

import (
	"bytes"
	"io"
	"testing"
)

// TestSealedReader: a part read through Part.Reader is byte for byte what
// Part.Seal produces, for parts of one and of many segments (pieces that
// straddle chunks), read in odd sizes, again after a Seek, and end first,
// and the whole object decrypts with the age library.
func TestSealedReader(t *testing.T) {
	x, _ := testKeys(t)
	for _, c := range []Compression{{Zstd: true}, {}} {
		plain := csvData(3<<20+12345, 7)
		w := newTestWriter(t, c, int64(len(plain)))
		// Parts of 1, 3 and the rest of segments of 300001 bytes.
		const seg = 300001
		var segs [][]byte
		for off := 0; off < len(plain); off += seg {
			segs = append(segs, plain[off:min(off+seg, len(plain))])
		}
		groups := [][][]byte{segs[:1], segs[1:4], segs[4:]}
		start, starts := w.Start(), []Boundary(nil)
		var object []byte
		for gi, g := range groups {
			last := gi == len(groups)-1
			pa, err := w.NewPart(start)
			if err != nil {
				t.Fatal(err)
			}
			pb, _ := w.NewPart(start)
			pc, _ := w.NewPart(start)
			for _, s := range g {
				comp, err := w.Compress(s)
				if err != nil {
					t.Fatal(err)
				}
				if err := pa.Add(s, comp); err != nil {
					t.Fatal(err)
				}
				if err := pb.Add(s, comp); err != nil {
					t.Fatal(err)
				}
				if err := pc.Add(s, comp); err != nil {
					t.Fatal(err)
				}
			}
			want, end, err := pa.Seal(nil, last, starts)
			if err != nil {
				t.Fatal(err)
			}
			r, end2, err := pb.Reader(last, starts)
			if err != nil {
				t.Fatal(err)
			}
			if r.Size() != int64(len(want)) || end2.Chunk != end.Chunk || end2.Plain != end.Plain {
				t.Fatalf("part %d: reader size %d, seal %d bytes", gi, r.Size(), len(want))
			}
			var got bytes.Buffer
			buf := make([]byte, 7777)
			for {
				n, err := r.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("part %d (zstd %v): reader bytes differ from Seal's", gi, c.Zstd)
			}
			if _, err := r.Seek(12345, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			again, _ := io.ReadAll(r)
			if !bytes.Equal(again, want[12345:]) {
				t.Fatalf("part %d: bytes after Seek differ", gi)
			}
			// The short final chunk first, then from the start: buffers
			// sized for the first chunk sealed grow for the longer ones.
			rc, _, err := pc.Reader(last, starts)
			if err != nil {
				t.Fatal(err)
			}
			rc.Seek(-100, io.SeekEnd)
			tail, _ := io.ReadAll(rc)
			rc.Seek(0, io.SeekStart)
			whole, _ := io.ReadAll(rc)
			if !bytes.Equal(tail, want[len(want)-100:]) || !bytes.Equal(whole, want) {
				t.Fatalf("part %d: bytes read end first differ", gi)
			}
			starts = append(starts, start)
			object = append(object, want...)
			start = end
		}
		if got := ageZstd(t, object, x[0].id); !bytes.Equal(got, plain) {
			t.Fatal("object does not decrypt to the source")
		}
	}
}
