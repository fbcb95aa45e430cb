package crypto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

const (
	// ChunkSize is the plaintext size of an age STREAM chunk.
	ChunkSize = 64 << 10
	// EncChunkSize is a sealed STREAM chunk: ChunkSize and the Poly1305 tag.
	EncChunkSize = ChunkSize + 16
	// FrameSize is the largest plaintext of one zstd data frame.
	FrameSize = 4 << 20
	// FormatVersion is the voyageur format version, written in the version
	// byte of every voyageur frame (META, PAD, TRAILER).
	FormatVersion = 1
)

const (
	// skippableMagic is the zstd skippable frame magic number used for all
	// voyageur frames (any of 0x184D2A50..0x184D2A5F is skippable).
	skippableMagic = 0x184D2A56
	// zstdMagic starts a zstd data frame.
	zstdMagic = 0xFD2FB528
	// skippableHeaderLen is the magic plus the 4-byte payload length.
	skippableHeaderLen = 8
	// payloadPrefixLen is the 4-byte tag plus the version byte.
	payloadPrefixLen = 5
	// minPadFrame is the smallest PAD frame: header, tag and version.
	minPadFrame = skippableHeaderLen + payloadPrefixLen
	// maxBlockSize is the largest zstd block (Block_Maximum_Size).
	maxBlockSize = 128 << 10
	// maxMetaPayload bounds the META payload (tag, version and JSON).
	maxMetaPayload = 64 << 10
	// maxParts bounds the TRAILER index (the S3 multipart limit).
	maxParts = 10000
	// trailerFixedLen is the TRAILER payload without index entries.
	trailerFixedLen = 49
	// maxDataFrame bounds the compressed bytes of one zstd data frame.
	maxDataFrame = 2 * FrameSize
)

const (
	tagMeta    = "META"
	tagPad     = "PADD"
	tagTrailer = "TRLR"
)

// Meta is what the META frame records about the source object.
type Meta struct {
	Key         string            `json:"key"` // original source key
	Size        int64             `json:"size"`
	MTime       time.Time         `json:"mtime"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ETag        string            `json:"etag,omitempty"` // source ETag
	VersionID   string            `json:"version_id,omitempty"`
}

// IndexEntry is where a multipart part starts: Plain is the source offset,
// Stream the offset in the zstd stream (the age plaintext), a multiple of
// [ChunkSize].
type IndexEntry struct{ Plain, Stream int64 }

// Trailer is the content of the TRAILER frame: the plaintext size, the
// SHA-256 of the source bytes and the start of every part, in order.
type Trailer struct {
	Size   int64
	SHA256 [32]byte
	Index  []IndexEntry
}

// appendSkippable appends a voyageur frame: the skippable frame header,
// then payload (tag, format version and body).
func appendSkippable(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, skippableMagic)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// padLen returns the PAD bytes needed after n stream bytes to reach a chunk
// boundary: 0 when n is already on one, else at least minPadFrame.
func padLen(n int64) int64 {
	r := n % ChunkSize
	if r == 0 {
		return 0
	}
	p := ChunkSize - r
	if p < minPadFrame {
		p += ChunkSize
	}
	return p
}

// appendPad appends one PAD frame of exactly size bytes (size >= minPadFrame)
// whose body is zeros.
func appendPad(dst []byte, size int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, skippableMagic)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(size-skippableHeaderLen))
	dst = append(dst, tagPad...)
	dst = append(dst, FormatVersion)
	return append(dst, make([]byte, size-minPadFrame)...)
}

// marshalMeta returns the META payload (tag, version, JSON). MTime is stored
// in UTC. Strings must be valid UTF-8: JSON would silently replace invalid
// bytes and the original key could not be restored.
func marshalMeta(m Meta) ([]byte, error) {
	if m.Size < 0 {
		return nil, fmt.Errorf("negative size %d", m.Size)
	}
	valid := utf8.ValidString(m.Key) && utf8.ValidString(m.ContentType) &&
		utf8.ValidString(m.ETag) && utf8.ValidString(m.VersionID)
	for k, v := range m.Metadata {
		valid = valid && utf8.ValidString(k) && utf8.ValidString(v)
	}
	if !valid {
		return nil, errors.New("meta strings must be valid UTF-8")
	}
	m.MTime = m.MTime.UTC()
	var buf bytes.Buffer
	buf.WriteString(tagMeta)
	buf.WriteByte(FormatVersion)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	p := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(p) > maxMetaPayload {
		return nil, fmt.Errorf("meta is %d bytes, more than %d", len(p), maxMetaPayload)
	}
	return p, nil
}

// ParseMeta parses a META frame payload: the bytes after the skippable frame
// header, starting with the tag "META" and the version byte. Unknown JSON
// fields are ignored (format version 1 may gain optional fields).
func ParseMeta(payload []byte) (Meta, error) {
	body, err := checkPrefix(payload, tagMeta)
	if err != nil {
		return Meta{}, fmt.Errorf("parse meta: %w", err)
	}
	if len(payload) > maxMetaPayload {
		return Meta{}, fmt.Errorf("parse meta: %d bytes, more than %d", len(payload), maxMetaPayload)
	}
	if !utf8.Valid(body) {
		return Meta{}, errors.New("parse meta: not valid UTF-8")
	}
	if len(body) == 0 || body[0] != '{' {
		return Meta{}, errors.New("parse meta: not a JSON object")
	}
	var m Meta
	if err := json.Unmarshal(body, &m); err != nil {
		return Meta{}, fmt.Errorf("parse meta: %w", err)
	}
	if m.Size < 0 {
		return Meta{}, fmt.Errorf("parse meta: negative size %d", m.Size)
	}
	return m, nil
}

// checkPrefix checks a voyageur frame payload's tag and version and returns
// the body.
func checkPrefix(payload []byte, tag string) ([]byte, error) {
	if len(payload) < payloadPrefixLen {
		return nil, fmt.Errorf("payload of %d bytes is too short", len(payload))
	}
	if string(payload[:4]) != tag {
		return nil, fmt.Errorf("tag %q, want %q", payload[:4], tag)
	}
	if payload[4] != FormatVersion {
		return nil, fmt.Errorf("unsupported format version %d", payload[4])
	}
	return payload[payloadPrefixLen:], nil
}

// marshalTrailer returns the TRAILER payload. Layout (little-endian):
//
//	0  "TRLR"   4  version   5  size u64   13  SHA-256 [32]
//	45 count u32   49  count × (plain u64, stream u64)
func marshalTrailer(t Trailer) []byte {
	p := make([]byte, 0, trailerFixedLen+16*len(t.Index))
	p = append(p, tagTrailer...)
	p = append(p, FormatVersion)
	p = binary.LittleEndian.AppendUint64(p, uint64(t.Size))
	p = append(p, t.SHA256[:]...)
	p = binary.LittleEndian.AppendUint32(p, uint32(len(t.Index)))
	for _, e := range t.Index {
		p = binary.LittleEndian.AppendUint64(p, uint64(e.Plain))
		p = binary.LittleEndian.AppendUint64(p, uint64(e.Stream))
	}
	return p
}

// ParseTrailer parses a TRAILER frame payload (the bytes after the skippable
// frame header) and checks the index: 1..10000 entries, the first (0, 0),
// stream offsets strictly increasing multiples of [ChunkSize], plain offsets
// non-decreasing and at most the size.
func ParseTrailer(payload []byte) (Trailer, error) {
	body, err := checkPrefix(payload, tagTrailer)
	if err != nil {
		return Trailer{}, fmt.Errorf("parse trailer: %w", err)
	}
	if len(payload) < trailerFixedLen {
		return Trailer{}, fmt.Errorf("parse trailer: payload of %d bytes is too short", len(payload))
	}
	var t Trailer
	size := binary.LittleEndian.Uint64(body[0:8])
	if size > math.MaxInt64 {
		return Trailer{}, errors.New("parse trailer: size out of range")
	}
	t.Size = int64(size)
	copy(t.SHA256[:], body[8:40])
	count := binary.LittleEndian.Uint32(body[40:44])
	if count == 0 || count > maxParts {
		return Trailer{}, fmt.Errorf("parse trailer: index of %d entries, want 1..%d", count, maxParts)
	}
	if len(payload) != trailerFixedLen+16*int(count) {
		return Trailer{}, fmt.Errorf("parse trailer: %d bytes for %d index entries", len(payload), count)
	}
	entries := body[44:]
	t.Index = make([]IndexEntry, count)
	for i := range t.Index {
		plain := binary.LittleEndian.Uint64(entries[16*i:])
		stream := binary.LittleEndian.Uint64(entries[16*i+8:])
		if plain > size || stream > math.MaxInt64 || stream%ChunkSize != 0 {
			return Trailer{}, fmt.Errorf("parse trailer: index entry %d out of range", i)
		}
		e := IndexEntry{Plain: int64(plain), Stream: int64(stream)}
		switch {
		case i == 0 && e != (IndexEntry{}):
			return Trailer{}, errors.New("parse trailer: index does not start at (0, 0)")
		case i > 0 && (e.Stream <= t.Index[i-1].Stream || e.Plain < t.Index[i-1].Plain):
			return Trailer{}, fmt.Errorf("parse trailer: index entry %d out of order", i)
		}
		t.Index[i] = e
	}
	return t, nil
}

// appendRawFrame appends a zstd frame holding src in Raw blocks: a
// single-segment frame header with the frame content size, then blocks of at
// most 128 KiB, the last one flagged. An empty src gives one empty last
// block. No content checksum: age authenticates every byte.
func appendRawFrame(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, zstdMagic)
	const singleSegment = 1 << 5
	n := uint64(len(src))
	switch {
	case n < 256:
		dst = append(dst, singleSegment, byte(n))
	case n < 65536+256:
		dst = append(dst, 1<<6|singleSegment)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(n-256))
	case n <= math.MaxUint32:
		dst = append(dst, 2<<6|singleSegment)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	default:
		dst = append(dst, 3<<6|singleSegment)
		dst = binary.LittleEndian.AppendUint64(dst, n)
	}
	for {
		b := min(len(src), maxBlockSize)
		var last uint32
		if b == len(src) {
			last = 1
		}
		hdr := uint32(b)<<3 | last // block type 0: Raw
		dst = append(dst, byte(hdr), byte(hdr>>8), byte(hdr>>16))
		dst = append(dst, src[:b]...)
		src = src[b:]
		if last == 1 {
			return dst
		}
	}
}

// frame is one frame of a voyageur zstd stream, as read by readFrame.
type frame struct {
	// data is true for a zstd data frame, false for a voyageur frame.
	data bool
	// bytes is the whole frame.
	bytes []byte
	// contentSize is a data frame's Frame_Content_Size.
	contentSize int64
	// tag is a voyageur frame's tag, payload its payload (tag included).
	tag     string
	payload []byte
}

// blockSkipper is a reader that can pass over n bytes of a zstd block
// without copying them, or fail with io.ErrUnexpectedEOF when fewer are
// left.
type blockSkipper interface {
	io.Reader
	skipBlock(n int) error
}

// sliceFrames reads frames from memory for readFrame, skipping blocks.
type sliceFrames struct{ bytes.Reader }

func (s *sliceFrames) skipBlock(n int) error {
	if s.Len() < n {
		return io.ErrUnexpectedEOF
	}
	_, err := s.Seek(int64(n), io.SeekCurrent)
	return err
}

// maxSkippable bounds a voyageur frame payload: the largest is a TRAILER
// with a full index.
const maxSkippable = trailerFixedLen + 16*maxParts

// readFrame reads one frame from r into buf (reused) without decompressing
// it. It returns io.EOF only when r ends before the first byte of a frame.
// Data frames must declare a content size of at most FrameSize and use no
// dictionary; voyageur frames must use skippableMagic and carry a tag.
// From a blockSkipper, a data frame's block contents are skipped, not
// copied: its bytes then hold only the headers.
func readFrame(r io.Reader, buf []byte) (frame, []byte, error) {
	buf = buf[:0]
	skipper, skip := r.(blockSkipper)
	skipped := 0 // block bytes skipped, not in buf
	read := func(n int) ([]byte, error) {
		start := len(buf)
		// Grown without clearing: ReadFull overwrites every byte.
		buf = slices.Grow(buf, n)[:start+n]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf[start:], nil
	}
	buf = append(buf, 0, 0, 0, 0)
	if _, err := io.ReadFull(r, buf); err != nil {
		return frame{}, buf, err // io.EOF only if r had no byte left
	}
	switch magic := binary.LittleEndian.Uint32(buf); {
	case magic == skippableMagic:
		h, err := read(4)
		if err != nil {
			return frame{}, buf, err
		}
		n := binary.LittleEndian.Uint32(h)
		if n < payloadPrefixLen || n > maxSkippable {
			return frame{}, buf, fmt.Errorf("voyageur frame payload of %d bytes", n)
		}
		if _, err := read(int(n)); err != nil {
			return frame{}, buf, err
		}
		p := buf[skippableHeaderLen:]
		return frame{bytes: buf, tag: string(p[:4]), payload: p}, buf, nil
	case magic&0xFFFFFFF0 == 0x184D2A50:
		return frame{}, buf, fmt.Errorf("unknown skippable frame %#x", magic)
	case magic != zstdMagic:
		return frame{}, buf, fmt.Errorf("not a zstd frame (magic %#x)", magic)
	}
	d, err := read(1)
	if err != nil {
		return frame{}, buf, err
	}
	desc := d[0]
	fcsFlag, single := desc>>6, desc&(1<<5) != 0
	if desc&(1<<3) != 0 {
		return frame{}, buf, errors.New("zstd frame header: reserved bit set")
	}
	if desc&3 != 0 {
		return frame{}, buf, errors.New("zstd frame header: dictionary not allowed")
	}
	if !single && fcsFlag == 0 {
		return frame{}, buf, errors.New("zstd frame header: no content size")
	}
	if !single {
		if _, err := read(1); err != nil { // Window_Descriptor
			return frame{}, buf, err
		}
	}
	fcsLen := []int{1, 2, 4, 8}[fcsFlag]
	f, err := read(fcsLen)
	if err != nil {
		return frame{}, buf, err
	}
	var size uint64
	switch fcsLen {
	case 1:
		size = uint64(f[0])
	case 2:
		size = uint64(binary.LittleEndian.Uint16(f)) + 256
	case 4:
		size = uint64(binary.LittleEndian.Uint32(f))
	default:
		size = binary.LittleEndian.Uint64(f)
	}
	if size > FrameSize {
		return frame{}, buf, fmt.Errorf("zstd frame of %d bytes, more than %d", size, FrameSize)
	}
	for {
		h, err := read(3)
		if err != nil {
			return frame{}, buf, err
		}
		hdr := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		last, typ, n := hdr&1 == 1, (hdr>>1)&3, int(hdr>>3)
		switch {
		case typ == 3:
			return frame{}, buf, errors.New("zstd block: reserved type")
		case n > maxBlockSize:
			return frame{}, buf, fmt.Errorf("zstd block of %d bytes", n)
		case typ == 1: // RLE: one byte on the wire
			n = 1
		}
		if len(buf)+skipped+n > maxDataFrame {
			return frame{}, buf, fmt.Errorf("zstd frame larger than %d bytes", maxDataFrame)
		}
		if skip {
			err = skipper.skipBlock(n)
			skipped += n
		} else {
			_, err = read(n)
		}
		if err != nil {
			return frame{}, buf, err
		}
		if last {
			break
		}
	}
	if desc&(1<<2) != 0 { // Content_Checksum
		if _, err := read(4); err != nil {
			return frame{}, buf, err
		}
	}
	return frame{data: true, bytes: buf, contentSize: int64(size)}, buf, nil
}
