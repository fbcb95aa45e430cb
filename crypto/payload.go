package crypto

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Payload opens the chunks of one age payload (the bytes after the header
// and the 16-byte nonce) in any order, each on its own: the counterpart of
// sealChunks, for a reader that decrypts sections of a replica in parallel
// (age's own DecryptReaderAt takes a chunk per call and copies it twice).
// It is safe for concurrent use.
type Payload struct {
	aead   cipher.AEAD
	size   int64 // sealed bytes
	chunks int64
}

// NewPayload returns the opener of a payload of size sealed bytes, whose
// key is derived from the file key and the payload nonce as age does. It
// reads nothing: the caller authenticates the final chunk (OpenChunks of
// its last bytes) before trusting size.
func NewPayload(fileKey, nonce []byte, size int64) (*Payload, error) {
	if len(nonce) != nonceSize {
		return nil, fmt.Errorf("open payload: nonce of %d bytes, want %d", len(nonce), nonceSize)
	}
	chunks := (size + EncChunkSize - 1) / EncChunkSize
	plain := size - chunks*chacha20poly1305.Overhead
	// As age: only an empty plaintext has (and needs) an empty chunk, and
	// a final chunk is never empty otherwise.
	want := (plain + ChunkSize - 1) / ChunkSize
	if plain == 0 {
		want = 1
	}
	if size <= 0 || want != chunks {
		return nil, fmt.Errorf("open payload: invalid sealed size %d", size)
	}
	aead, err := chacha20poly1305.New(hkdfKey(fileKey, nonce, "payload"))
	if err != nil {
		return nil, fmt.Errorf("open payload: %w", err)
	}
	return &Payload{aead: aead, size: size, chunks: chunks}, nil
}

// PlainSize is the plaintext size: the zstd stream.
func (p *Payload) PlainSize() int64 { return p.size - p.chunks*chacha20poly1305.Overhead }

// SealedSize is the payload's size: its chunks sealed.
func (p *Payload) SealedSize() int64 { return p.size }

// Chunks is the number of chunks.
func (p *Payload) Chunks() int64 { return p.chunks }

// OpenChunks decrypts and authenticates sealed, the consecutive chunks
// from chunk first on (whole chunks; the payload's final one may be
// shorter), appending their plaintext to dst. dst's spare capacity must not
// overlap sealed. The final chunk is opened with the last-chunk flag, so a
// payload cut short, or one whose end was moved, fails here.
func (p *Payload) OpenChunks(dst, sealed []byte, first int64) ([]byte, error) {
	off := first * EncChunkSize
	if first < 0 || first >= p.chunks || off+int64(len(sealed)) > p.size ||
		(len(sealed)%EncChunkSize != 0 && off+int64(len(sealed)) != p.size) {
		return dst, fmt.Errorf("open chunks: %d sealed bytes from chunk %d do not end on a chunk of a %d-byte payload", len(sealed), first, p.size)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	for i := first; len(sealed) > 0; i++ {
		n := min(len(sealed), EncChunkSize)
		setChunkNonce(&nonce, uint64(i), i == p.chunks-1)
		var err error
		if dst, err = p.aead.Open(dst, nonce[:], sealed[:n], nil); err != nil {
			return dst, fmt.Errorf("chunk %d failed authentication: %w", i, err)
		}
		sealed = sealed[n:]
	}
	return dst, nil
}

// ReaderAt returns random access to the plaintext, reading the sealed
// payload from src (at payload offsets) a whole span of chunks per call:
// for the small reads of a replica's META and TRAILER, not for streaming.
func (p *Payload) ReaderAt(src io.ReaderAt) io.ReaderAt { return &payloadReaderAt{p: p, src: src} }

type payloadReaderAt struct {
	p   *Payload
	src io.ReaderAt
}

func (r *payloadReaderAt) ReadAt(b []byte, off int64) (int, error) {
	size := r.p.PlainSize()
	if off < 0 || off > size {
		return 0, fmt.Errorf("read payload at %d: out of range [0, %d]", off, size)
	}
	end := min(off+int64(len(b)), size)
	if end == off {
		if len(b) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	first, last := off/ChunkSize, (end-1)/ChunkSize
	sealedEnd := min((last+1)*EncChunkSize, r.p.size)
	sealed := make([]byte, sealedEnd-first*EncChunkSize)
	if k, err := r.src.ReadAt(sealed, first*EncChunkSize); k < len(sealed) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("read payload at %d: %w", off, err)
	}
	plain, err := r.p.OpenChunks(make([]byte, 0, (last-first+1)*ChunkSize), sealed, first)
	if err != nil {
		return 0, fmt.Errorf("read payload at %d: %w", off, err)
	}
	n := copy(b, plain[off-first*ChunkSize:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}
