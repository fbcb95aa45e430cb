package crypto

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
)

func FuzzParseMeta(f *testing.F) {
	p, err := marshalMeta(Meta{Key: "a/b.csv", Size: 42, MTime: time.Unix(1700000000, 5), Metadata: map[string]string{"k": "v"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add([]byte("META\x01{}"))
	f.Add([]byte("META\x01null"))
	f.Add([]byte("META\x02{}"))
	f.Add([]byte("META\x01{\"size\":-1}"))
	f.Add([]byte("META\x01{\"key\":\"\xff\"}"))
	f.Add([]byte("META"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := ParseMeta(payload)
		if err != nil {
			return
		}
		// A parsed META must encode again and parse to the same fields.
		again, err := marshalMeta(m)
		if err != nil {
			t.Fatalf("parsed meta does not marshal: %v", err)
		}
		m2, err := ParseMeta(again)
		if err != nil || m2.Key != m.Key || m2.Size != m.Size || !m2.MTime.Equal(m.MTime) {
			t.Fatalf("meta does not round-trip: %+v %+v %v", m, m2, err)
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	f.Add(marshalTrailer(Trailer{Size: 0, SHA256: sha256.Sum256(nil), Index: []IndexEntry{{}}}))
	f.Add(marshalTrailer(Trailer{Size: 10 << 20, Index: []IndexEntry{{}, {Plain: 5 << 20, Stream: 80 * ChunkSize}}}))
	f.Add(marshalTrailer(Trailer{Size: 1, Index: []IndexEntry{{Plain: 1}}}))
	f.Add(marshalTrailer(Trailer{Size: 1}))
	f.Add([]byte("TRLR\x01"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		tr, err := ParseTrailer(payload)
		if err != nil {
			return
		}
		if !bytes.Equal(marshalTrailer(tr), payload) {
			t.Fatal("trailer does not re-encode to the same bytes")
		}
	})
}

// FuzzWalk feeds arbitrary zstd streams to the frame walker: it must never
// panic, and whatever it accepts must hash to its TRAILER.
func FuzzWalk(f *testing.F) {
	data := []byte("date,amount\n2024-01-01,12.50\n")
	meta, err := marshalMeta(Meta{Key: "k", Size: int64(len(data))})
	if err != nil {
		f.Fatal(err)
	}
	tr := marshalTrailer(Trailer{Size: int64(len(data)), SHA256: sha256.Sum256(data), Index: []IndexEntry{{}}})
	frame := appendRawFrame(nil, data)
	valid := bytes.Join([][]byte{appendSkippable(nil, meta), frame, appendSkippable(nil, tr)}, nil)
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(bytes.Join([][]byte{appendSkippable(nil, meta), frame, appendPad(nil, ChunkSize-len(valid)+len(tr)+8), appendSkippable(nil, tr)}, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, stream []byte) {
		var out bytes.Buffer
		_, tr, err := walk(bytes.NewReader(stream), &out)
		if err != nil {
			return
		}
		if sha256.Sum256(out.Bytes()) != tr.SHA256 {
			t.Fatal("accepted stream does not match its trailer")
		}
	})
}
