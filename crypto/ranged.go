package crypto

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
)

// maxTrailerFrame is the largest TRAILER frame: header and a full index.
const maxTrailerFrame = skippableHeaderLen + trailerFixedLen + 16*maxParts

// ReadTrailerAt reads the TRAILER frame that ends a replica's zstd stream,
// given random access to the stream (the age plaintext, as
// age.DecryptReaderAt or Payload.ReaderAt returns it) and its size. It
// reads the last 64 KiB, and up to the largest TRAILER only when the
// index is longer.
func ReadTrailerAt(stream io.ReaderAt, size int64) (Trailer, error) {
	for n := min(size, ChunkSize); ; n = min(size, maxTrailerFrame) {
		buf := make([]byte, n)
		if _, err := stream.ReadAt(buf, size-n); err != nil && !(errors.Is(err, io.EOF) && len(buf) == int(n)) {
			return Trailer{}, fmt.Errorf("read trailer: %w", err)
		}
		// The frame is 8 + 49 + 16·k bytes for an index of k entries, and
		// its count field says k: find the k that fits.
		for k := 1; k <= maxParts; k++ {
			flen := skippableHeaderLen + trailerFixedLen + 16*k
			if flen > len(buf) {
				break
			}
			f := buf[len(buf)-flen:]
			if binary.LittleEndian.Uint32(f) != skippableMagic ||
				binary.LittleEndian.Uint32(f[4:]) != uint32(flen-skippableHeaderLen) ||
				string(f[8:12]) != tagTrailer ||
				binary.LittleEndian.Uint32(f[skippableHeaderLen+45:]) != uint32(k) {
				continue
			}
			return ParseTrailer(f[skippableHeaderLen:])
		}
		if n == size || n == maxTrailerFrame {
			return Trailer{}, errors.New("read trailer: the stream does not end with a TRAILER frame")
		}
	}
}

// ReadMetaAt reads the META frame that starts a replica's zstd stream,
// given random access to the stream (the age plaintext, as
// age.DecryptReaderAt or Payload.ReaderAt returns it) and its size.
func ReadMetaAt(stream io.ReaderAt, size int64) (Meta, error) {
	return readMetaFrame(io.NewSectionReader(stream, 0, size))
}

// PartSpan returns the section [start, end) of the zstd stream that holds
// the plaintext bytes [off, off+n) (n > 0), and the plaintext offset at
// start: from the last part starting at or before off to the end of the
// part holding the last byte (the stream's end for the last part). Parts
// start on STREAM chunk boundaries, so the section covers whole chunks but
// perhaps its last.
func PartSpan(t Trailer, streamSize, off, n int64) (start, end, plain int64) {
	at := func(p int64) int { // the last entry starting at or before p
		return sort.Search(len(t.Index), func(i int) bool { return t.Index[i].Plain > p }) - 1
	}
	i, j := at(off), at(off+n-1)
	end = streamSize
	if j+1 < len(t.Index) {
		end = t.Index[j+1].Stream
	}
	return t.Index[i].Stream, end, t.Index[i].Plain
}

// sectionBuffer is how much of the stream a RangeReader reads at once:
// age's DecryptReaderAt takes a fresh chunk buffer for every call, so
// reading 4 chunks per call allocates (and clears) a quarter as many,
// while a ranged read reads at most that much past its last frame.
const sectionBuffer = 4 * ChunkSize

// NewRangeReader returns the plaintext bytes [off, off+n) of a replica,
// decoded from the stream section PartSpan gives (section holds exactly
// those stream bytes, read sequentially). Data frames before off are
// skipped by their declared size, not decoded. A read of the whole object
// (off 0, n the TRAILER size) is also checked against the TRAILER SHA-256,
// and its last frame is held back until it matches. Every error is final.
func NewRangeReader(section io.Reader, t Trailer, plain, off, n int64) io.Reader {
	r := newRangeReader(section, t, plain, off, n)
	if off == 0 && n == t.Size {
		r.h = sha256.New()
	}
	return r
}

// NewUnhashedRangeReader is NewRangeReader without the SHA-256 of a
// whole-object read, for a reader that streams objects and cannot spend a
// hash of every byte on what it only adds against a bug of the writer:
// age authenticates every chunk, their order and the end of the stream,
// and every data frame is still checked against its declared size (and
// its zstd checksum, when it has one).
func NewUnhashedRangeReader(section io.Reader, t Trailer, plain, off, n int64) io.Reader {
	return newRangeReader(section, t, plain, off, n)
}

// newRangeReader reads section in small pieces (frame headers, blocks):
// through a bufio.Reader, unless section already is an io.ByteReader, one
// that reads from memory, which a buffer would only add a copy to.
func newRangeReader(section io.Reader, t Trailer, plain, off, n int64) *rangeReader {
	if _, ok := section.(io.ByteReader); !ok {
		section = bufio.NewReaderSize(section, sectionBuffer)
	}
	return &rangeReader{r: section, plain: plain, off: off, end: off + n, t: t}
}

type rangeReader struct {
	r        io.Reader
	plain    int64 // plaintext offset of the next frame
	off, end int64 // the bytes still wanted
	t        Trailer
	h        hash.Hash // whole-object reads only
	buf, dec []byte
	out      []byte // decoded bytes not yet returned
	err      error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 && r.err == nil {
		if r.off >= r.end {
			r.err = io.EOF
			break
		}
		r.err = r.next()
	}
	if len(r.out) > 0 {
		n := copy(p, r.out)
		r.out = r.out[n:]
		return n, nil
	}
	return 0, r.err
}

// next reads one frame, leaving the wanted part of its plaintext in out.
func (r *rangeReader) next() error {
	var (
		f   frame
		err error
	)
	f, r.buf, err = readFrame(r.r, r.buf)
	if err != nil {
		return fmt.Errorf("frame at plaintext offset %d: %w", r.plain, noEOF(err))
	}
	if !f.data {
		switch f.tag {
		case tagMeta, tagPad:
			return nil
		case tagTrailer:
			return fmt.Errorf("TRAILER at plaintext offset %d, before byte %d", r.plain, r.end)
		default:
			return fmt.Errorf("unexpected %q frame", f.tag)
		}
	}
	if r.h == nil && r.plain+f.contentSize <= r.off {
		r.plain += f.contentSize
		return nil
	}
	d, err := decoder()
	if err != nil {
		return err
	}
	if r.dec, err = d.DecodeAll(f.bytes, r.dec[:0]); err != nil {
		return fmt.Errorf("zstd frame at plaintext offset %d: %w", r.plain, err)
	}
	if int64(len(r.dec)) != f.contentSize {
		return fmt.Errorf("zstd frame at plaintext offset %d: %d bytes, header says %d", r.plain, len(r.dec), f.contentSize)
	}
	lo, hi := max(r.off-r.plain, 0), min(r.end-r.plain, f.contentSize)
	r.plain += f.contentSize
	if r.h != nil {
		r.h.Write(r.dec)
		if r.plain >= r.end {
			if r.plain != r.t.Size || [32]byte(r.h.Sum(nil)) != r.t.SHA256 {
				return errors.New("plaintext does not match the TRAILER size and SHA-256")
			}
		}
	}
	if lo < hi {
		r.out = r.dec[lo:hi]
		r.off = r.plain - f.contentSize + hi
	}
	return nil
}
