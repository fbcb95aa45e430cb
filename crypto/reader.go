package crypto

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// Decrypt reads a replica object through age.Decrypt, walks its zstd stream
// frame by frame (META first, then data frames and PADs, TRAILER last; any
// other order or unknown frame is an error), writes the plaintext to dst and
// verifies it against TRAILER: size, SHA-256, and that every index entry is
// the start of a frame at that plaintext offset. The size must also match
// META's.
//
// A wrong identity or a corrupt header fails before anything is written to
// dst. Later errors may come after some plaintext was written: a caller that
// writes to a file must write to a temporary file and rename it only after
// Decrypt succeeded.
func Decrypt(src io.Reader, dst io.Writer, identities ...age.Identity) (Meta, Trailer, error) {
	r, err := age.Decrypt(src, identities...)
	if err != nil {
		return Meta{}, Trailer{}, fmt.Errorf("decrypt: %w", err)
	}
	m, t, err := walk(bufio.NewReaderSize(r, ChunkSize), dst)
	if err != nil {
		return Meta{}, Trailer{}, fmt.Errorf("decrypt: %w", err)
	}
	return m, t, nil
}

// ReadMeta decrypts only as far as the META frame (usually the first STREAM
// chunk) and returns it. It does not authenticate the rest of the object.
func ReadMeta(src io.Reader, identities ...age.Identity) (Meta, error) {
	r, err := age.Decrypt(src, identities...)
	if err != nil {
		return Meta{}, fmt.Errorf("read meta: %w", err)
	}
	return readMetaFrame(r)
}

// readMetaFrame reads the META frame that starts a zstd stream.
func readMetaFrame(r io.Reader) (Meta, error) {
	f, _, err := readFrame(r, nil)
	if err != nil {
		return Meta{}, fmt.Errorf("read meta: first frame: %w", noEOF(err))
	}
	if f.data || f.tag != tagMeta {
		return Meta{}, errors.New("read meta: first frame is not META")
	}
	m, err := ParseMeta(f.payload)
	if err != nil {
		return Meta{}, fmt.Errorf("read meta: %w", err)
	}
	return m, nil
}

// walk reads the zstd stream from r and writes its plaintext to dst.
func walk(r io.Reader, dst io.Writer) (Meta, Trailer, error) {
	var (
		buf, out []byte
		pos      int64        // stream offset of the next frame
		plain    int64        // plaintext bytes so far
		starts   []IndexEntry // chunk-aligned frame starts
		meta     Meta
		data     int // data frames seen
		h        = sha256.New()
	)
	dec, err := decoder()
	if err != nil {
		return Meta{}, Trailer{}, err
	}
	for n := 0; ; n++ {
		var f frame
		f, buf, err = readFrame(r, buf)
		if err != nil {
			return Meta{}, Trailer{}, fmt.Errorf("frame at stream offset %d: %w", pos, noEOF(err))
		}
		if pos%ChunkSize == 0 {
			starts = append(starts, IndexEntry{Plain: plain, Stream: pos})
		}
		pos += int64(len(f.bytes))
		switch {
		case n == 0 && (f.data || f.tag != tagMeta):
			return Meta{}, Trailer{}, errors.New("stream does not start with META")
		case n == 0:
			if meta, err = ParseMeta(f.payload); err != nil {
				return Meta{}, Trailer{}, err
			}
		case f.data:
			if out, err = dec.DecodeAll(f.bytes, out[:0]); err != nil {
				return Meta{}, Trailer{}, fmt.Errorf("zstd frame at stream offset %d: %w", pos-int64(len(f.bytes)), err)
			}
			if int64(len(out)) != f.contentSize {
				return Meta{}, Trailer{}, fmt.Errorf("zstd frame at stream offset %d: %d bytes, header says %d", pos-int64(len(f.bytes)), len(out), f.contentSize)
			}
			h.Write(out)
			plain += int64(len(out))
			data++
			if _, err := dst.Write(out); err != nil {
				return Meta{}, Trailer{}, fmt.Errorf("write plaintext: %w", err)
			}
		case f.tag == tagPad:
			if err := checkPad(f.payload, pos); err != nil {
				return Meta{}, Trailer{}, err
			}
		case f.tag == tagTrailer:
			t, err := ParseTrailer(f.payload)
			if err != nil {
				return Meta{}, Trailer{}, err
			}
			if err := checkEnd(r, data); err != nil {
				return Meta{}, Trailer{}, err
			}
			if err := verify(meta, t, plain, h.Sum(nil), starts); err != nil {
				return Meta{}, Trailer{}, err
			}
			return meta, t, nil
		default:
			return Meta{}, Trailer{}, fmt.Errorf("unexpected %q frame at stream offset %d", f.tag, pos-int64(len(f.bytes)))
		}
	}
}

// checkPad checks a PAD payload: zero body, and the frame ends (at stream
// offset end) on a chunk boundary.
func checkPad(payload []byte, end int64) error {
	body, err := checkPrefix(payload, tagPad)
	if err != nil {
		return fmt.Errorf("pad: %w", err)
	}
	for _, b := range body {
		if b != 0 {
			return errors.New("pad: non-zero body")
		}
	}
	if end%ChunkSize != 0 {
		return fmt.Errorf("pad ends at stream offset %d, not on a chunk boundary", end)
	}
	return nil
}

// checkEnd checks that TRAILER is the last frame and that data frames came
// before it.
func checkEnd(r io.Reader, dataFrames int) error {
	if dataFrames == 0 {
		return errors.New("no data frame before TRAILER")
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return errors.New("data after TRAILER")
	case err != io.EOF:
		return fmt.Errorf("after TRAILER: %w", err)
	}
	return nil
}

// verify checks the plaintext against TRAILER and META; starts are the
// chunk-aligned frame starts seen, in stream order.
func verify(m Meta, t Trailer, plain int64, sum []byte, starts []IndexEntry) error {
	if t.Size != plain {
		return fmt.Errorf("plaintext has %d bytes, TRAILER says %d", plain, t.Size)
	}
	if [32]byte(sum) != t.SHA256 {
		return errors.New("plaintext SHA-256 does not match TRAILER")
	}
	if m.Size != t.Size {
		return fmt.Errorf("META says %d bytes, TRAILER %d", m.Size, t.Size)
	}
	i := 0
	for _, e := range t.Index {
		for i < len(starts) && starts[i].Stream < e.Stream {
			i++
		}
		if i == len(starts) || starts[i] != e {
			return fmt.Errorf("TRAILER index entry (%d, %d) is not a frame start", e.Plain, e.Stream)
		}
	}
	return nil
}

// noEOF turns a premature io.EOF into io.ErrUnexpectedEOF: the stream may
// only end after TRAILER.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoder returns the shared zstd decoder. DecodeAll is safe for concurrent
// use. Data frames hold at most FrameSize bytes, which bounds its memory.
var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(FrameSize),
		zstd.WithDecoderMaxWindow(2*FrameSize),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return d, nil
})
