package crypto

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/chacha20poly1305"
)

// ErrProducerChanged is returned (wrapped) by [ResumeWriter] when the state
// was made by a producer whose compressed output may differ from this one's
// (format version, klauspost/compress version, architecture, compression or
// level). Re-producing a part could then seal different plaintext under the
// same STREAM nonces: the caller must restart the object with [NewWriter].
var ErrProducerChanged = errors.New("producer changed since the upload started: restart the object with a fresh file key")

// Compression selects the data frames' encoding. Zstd false stores the data
// in zstd Raw blocks (still a zstd stream). Level is on the zstd CLI scale,
// 1..19, 0 meaning the default 3; it is mapped with zstd.EncoderLevelFromZstd.
type Compression struct {
	Zstd  bool
	Level int
}

// Options configure a new object.
type Options struct {
	// Recipients receive the file key; at least one, all with the same age
	// labels (post-quantum and classic recipients can't be mixed).
	Recipients  []age.Recipient
	Compression Compression
}

// Boundary is the writer's position between two parts.
type Boundary struct {
	Plain int64  // source bytes consumed so far
	Chunk uint64 // counter of the next STREAM chunk
	Hash  []byte // serialized SHA-256 state of the source bytes so far (encoding.BinaryMarshaler)
}

// Writer produces the parts of one replica object. It holds the object's
// file key and payload nonce; its methods are safe for concurrent use.
type Writer struct {
	st      writerState
	aead    cipher.AEAD
	enc     *zstd.Encoder // nil: Raw blocks
	metaLen int64         // META frame bytes
}

// writerState is what State serializes. It holds the file key: it is secret.
type writerState struct {
	Format      int    `json:"format"`
	Fingerprint string `json:"fingerprint"`
	FileKey     []byte `json:"file_key"`
	Nonce       []byte `json:"nonce"`
	Header      []byte `json:"header"`
	Meta        []byte `json:"meta"` // META payload: tag, version, JSON
	Size        int64  `json:"size"` // Meta.Size: what the last part must reach
	Zstd        bool   `json:"zstd"`
	Level       int    `json:"level"`
}

// NewWriter starts a new object: a fresh random file key and payload nonce,
// the age header (one stanza set per recipient, header MAC) and the META
// frame. It fails without recipients, with recipients whose labels differ, an
// invalid compression level, invalid meta (negative size, non-UTF-8 strings,
// more than 64 KiB of JSON) or when a recipient fails to wrap the key.
func NewWriter(opts Options, meta Meta) (*Writer, error) {
	level, err := normalizeLevel(opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	metaPayload, err := marshalMeta(meta)
	if err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	st := writerState{
		Format:  FormatVersion,
		FileKey: make([]byte, fileKeySize),
		Nonce:   make([]byte, nonceSize),
		Meta:    metaPayload,
		Size:    meta.Size,
		Zstd:    opts.Compression.Zstd,
		Level:   level,
	}
	rand.Read(st.FileKey)
	rand.Read(st.Nonce)
	st.Fingerprint = fingerprint(st.Zstd, st.Level)
	if st.Header, err = buildHeader(st.FileKey, opts.Recipients); err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	w, err := newWriter(st)
	if err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	return w, nil
}

// ResumeWriter rebuilds the Writer that returned state from [Writer.State].
// The resumed Writer re-produces any part byte for byte. It returns an error
// wrapping [ErrProducerChanged] when this build would compress differently.
func ResumeWriter(state []byte) (*Writer, error) {
	var st writerState
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, errors.New("resume writer: malformed state")
	}
	if st.Format != FormatVersion {
		return nil, fmt.Errorf("resume writer: %w: state has format version %d, this build writes %d", ErrProducerChanged, st.Format, FormatVersion)
	}
	if len(st.FileKey) != fileKeySize || len(st.Nonce) != nonceSize {
		return nil, errors.New("resume writer: malformed state: bad file key or nonce size")
	}
	if _, err := normalizeLevel(Compression{Zstd: st.Zstd, Level: st.Level}); err != nil {
		return nil, fmt.Errorf("resume writer: malformed state: %w", err)
	}
	if fp := fingerprint(st.Zstd, st.Level); fp != st.Fingerprint {
		return nil, fmt.Errorf("resume writer: %w: state made by %q, this build is %q", ErrProducerChanged, st.Fingerprint, fp)
	}
	m, err := ParseMeta(st.Meta)
	if err != nil || m.Size != st.Size {
		return nil, errors.New("resume writer: malformed state: bad meta")
	}
	w, err := newWriter(st)
	if err != nil {
		return nil, fmt.Errorf("resume writer: %w", err)
	}
	return w, nil
}

func newWriter(st writerState) (*Writer, error) {
	if err := checkHeader(st.Header, st.FileKey); err != nil {
		return nil, fmt.Errorf("age header does not verify: %w", err)
	}
	aead, err := chacha20poly1305.New(hkdfKey(st.FileKey, st.Nonce, "payload"))
	if err != nil {
		return nil, err
	}
	w := &Writer{st: st, aead: aead, metaLen: int64(skippableHeaderLen + len(st.Meta))}
	if st.Zstd {
		if w.enc, err = encoderFor(st.Level); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// State returns everything needed to re-produce any part of the object: file
// key, payload nonce, header bytes, META bytes, compression and producer
// fingerprint. It holds the file key in clear: it is as secret as the
// plaintext, store it only where the source data could be stored.
func (w *Writer) State() ([]byte, error) {
	b, err := json.Marshal(w.st)
	if err != nil {
		return nil, fmt.Errorf("writer state: %w", err)
	}
	return b, nil
}

// Start returns the boundary before the first part: Plain 0, Chunk 0 and the
// SHA-256 state of nothing.
func (w *Writer) Start() Boundary {
	h, _ := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	return Boundary{Hash: h}
}

// Compress turns one part's source bytes into zstd frames of at most
// FrameSize plaintext bytes each, concatenated (one empty frame for empty
// input). The output depends only on plain and the producer fingerprint, so a
// part compressed again after a crash is byte-identical. Safe for concurrent
// use by many goroutines.
func (w *Writer) Compress(plain []byte) ([]byte, error) {
	// Room for the worst case up front: EncodeAll appending frame after
	// frame to a short slice would copy the output over and over.
	out, err := w.CompressTo(make([]byte, 0, CompressedBound(int64(len(plain)))), plain)
	if err == nil && cap(out) > 2*len(out) {
		// Compressible data: callers hold the output for a while and
		// account for its length, so do not keep the unused room.
		out = slices.Clone(out)
	}
	return out, err
}

// CompressTo is Compress appending to dst: with cap(dst) ≥
// CompressedBound(len(plain)), it allocates nothing.
func (w *Writer) CompressTo(dst, plain []byte) ([]byte, error) {
	if w == nil || w.aead == nil {
		return nil, errors.New("compress: writer not created by NewWriter or ResumeWriter")
	}
	if len(plain) == 0 {
		return appendRawFrame(dst, nil), nil
	}
	for len(plain) > 0 {
		n := min(len(plain), FrameSize)
		if w.enc != nil {
			dst = w.enc.EncodeAll(plain[:n], dst)
		} else {
			dst = appendRawFrame(dst, plain[:n])
		}
		plain = plain[n:]
	}
	return dst, nil
}

// CompressedBound is the most bytes Compress returns for n source bytes:
// zstd's worst-case expansion (ZSTD_compressBound), plus a frame header
// (≤ 18 bytes) and content checksum (4) per frame and 3 bytes per block.
func CompressedBound(n int64) int64 {
	frames := max(1, (n+FrameSize-1)/FrameSize)
	blocks := n/maxBlockSize + frames
	return n + n>>8 + frames*(18+4) + blocks*3
}

// Seal produces one part's bytes, appended to dst, given the boundary at its
// start (from the previous part's Seal, or Start()), the part's source bytes
// (hashed) and its Compress output. It is NewPart, Add and Part.Seal in one
// call; see Part.Seal for the layout and the rules.
func (w *Writer) Seal(dst []byte, start Boundary, plain, compressed []byte, last bool, index []Boundary) ([]byte, Boundary, error) {
	p, err := w.NewPart(start)
	if err != nil {
		return dst, Boundary{}, err
	}
	if err := p.Add(plain, compressed); err != nil {
		return dst, Boundary{}, err
	}
	return p.Seal(dst, last, index)
}

// Part gathers one part from any number of consecutive source segments:
// their compressed frames, and the SHA-256 chain over their source bytes,
// so that a part of highly compressible data can span many segments (and
// reach the store's minimum part size) without holding their plaintext.
type Part struct {
	w     *Writer
	start Boundary
	h     hash.Hash
	plain int64
	// segs are the segments' Compress outputs, kept as they are: sealing
	// reads them in place.
	segs       [][]byte
	compressed int64
}

// NewPart starts a part at start: Start() for the first part, else the
// boundary the previous part's Seal returned.
func (w *Writer) NewPart(start Boundary) (*Part, error) {
	if w == nil || w.aead == nil {
		return nil, errors.New("seal: writer not created by NewWriter or ResumeWriter")
	}
	if (start.Chunk == 0) != (start.Plain == 0) || start.Plain < 0 {
		return nil, fmt.Errorf("seal: invalid start boundary (plain %d, chunk %d)", start.Plain, start.Chunk)
	}
	h, err := restoreHash(start.Hash)
	if err != nil {
		return nil, fmt.Errorf("seal: start boundary: %w", err)
	}
	return &Part{w: w, start: start, h: h}, nil
}

// Add appends the next source segment: its bytes (hashed, not kept) and
// their Compress output, which the part keeps until it is sealed (Seal, or
// the last read of its Reader): the caller must not change it before.
// Segments must be added in source order.
func (p *Part) Add(plain, compressed []byte) error {
	if err := checkCompressed(compressed, len(plain)); err != nil {
		return fmt.Errorf("seal: compressed part: %w", err)
	}
	if end := p.start.Plain + p.plain + int64(len(plain)); end > p.w.st.Size {
		return fmt.Errorf("seal: part ends at %d source bytes, meta says the object has %d", end, p.w.st.Size)
	}
	p.h.Write(plain)
	p.plain += int64(len(plain))
	p.segs = append(p.segs, compressed)
	p.compressed += int64(len(compressed))
	return nil
}

// Compressed is the number of compressed bytes added so far: about what
// the sealed part will weigh.
func (p *Part) Compressed() int64 { return p.compressed }

// layout is a part's sealed form before any byte is sealed: the clear
// prefix (age header and payload nonce, first part only), the stream
// pieces (META, the segments, PAD or TRAILER) and its chunk numbers.
type layout struct {
	prefix  []byte
	pieces  [][]byte
	counter uint64
	chunks  int64
	stream  int64
	last    bool
}

// size is the sealed part's length in bytes.
func (l *layout) size() int64 {
	return int64(len(l.prefix)) + l.stream + l.chunks*chacha20poly1305.Overhead
}

// layout computes where the part's bytes go and its end boundary. The
// first part (started at Start()) begins with the age header and payload
// nonce, and its stream begins with META. A non-last part ends on a chunk
// boundary (PAD) and no chunk has the last flag; the last part ends with
// TRAILER (whose index is index — the start boundaries of all earlier
// parts, in order — plus this part's start) and its final chunk carries the
// last flag.
func (p *Part) layout(last bool, index []Boundary) (layout, Boundary, error) {
	w, start := p.w, p.start
	first := start.Chunk == 0
	end := Boundary{Plain: start.Plain + p.plain}
	n := p.compressed
	if first {
		n += w.metaLen
	}
	var tail []byte
	if last {
		if end.Plain != w.st.Size {
			return layout{}, Boundary{}, fmt.Errorf("seal: last part ends at %d source bytes, meta says the object has %d", end.Plain, w.st.Size)
		}
		t := Trailer{Size: end.Plain}
		copy(t.SHA256[:], p.h.Sum(nil))
		var err error
		if t.Index, err = trailerIndex(index, start); err != nil {
			return layout{}, Boundary{}, fmt.Errorf("seal: %w", err)
		}
		tail = appendSkippable(nil, marshalTrailer(t))
	} else if pad := padLen(n); pad > 0 {
		tail = appendPad(nil, int(pad))
	}
	l := layout{counter: start.Chunk, last: last, pieces: make([][]byte, 0, len(p.segs)+2)}
	if first {
		l.prefix = append(slices.Clip(w.st.Header), w.st.Nonce...)
		l.pieces = append(l.pieces, appendSkippable(nil, w.st.Meta))
	}
	l.pieces = append(append(l.pieces, p.segs...), tail)
	for _, pc := range l.pieces {
		l.stream += int64(len(pc))
	}
	l.chunks = (l.stream + ChunkSize - 1) / ChunkSize
	end.Chunk = start.Chunk + uint64(l.chunks)
	var err error
	if end.Hash, err = p.h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return layout{}, Boundary{}, fmt.Errorf("seal: %w", err)
	}
	return l, end, nil
}

// Seal produces the part's bytes, appended to dst, and the boundary at its
// end (see layout for what a part holds). Parts are sealed in order (the
// hash chains), and the same inputs always give the same bytes.
func (p *Part) Seal(dst []byte, last bool, index []Boundary) ([]byte, Boundary, error) {
	l, end, err := p.layout(last, index)
	if err != nil {
		return dst, Boundary{}, err
	}
	// One allocation of the exact size: appending chunk by chunk to a
	// short dst would copy a large part many times over as it grows.
	dst = slices.Grow(dst, int(l.size()))
	dst = append(dst, l.prefix...)
	return sealChunks(dst, p.w.aead, l.counter, l.last, l.pieces...), end, nil
}

// Reader is Seal without the sealed copy: it returns the part's bytes as a
// reader that seals each chunk from the segments as it is read, so a part
// in flight weighs its compressed bytes only. Reading it again (after a
// Seek, for a retried request) yields the same bytes. It also returns the
// boundary at the part's end; the part must not be changed afterwards.
func (p *Part) Reader(last bool, index []Boundary) (*SealedReader, Boundary, error) {
	l, end, err := p.layout(last, index)
	if err != nil {
		return nil, Boundary{}, err
	}
	return &SealedReader{aead: p.w.aead, l: l, size: l.size(), cached: -1}, end, nil
}

// SealedReader reads a sealed part (Part.Reader). It is an io.ReadSeeker
// for one goroutine at a time.
type SealedReader struct {
	aead   cipher.AEAD
	l      layout
	size   int64
	pos    int64
	cached int64  // the chunk in sealed, -1: none
	sealed []byte // one sealed chunk
	plain  []byte // gathers a chunk that straddles pieces
}

var _ io.ReadSeeker = (*SealedReader)(nil)

// Size is the sealed part's length in bytes.
func (r *SealedReader) Size() int64 { return r.size }

// Read implements io.Reader.
func (r *SealedReader) Read(b []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n := 0
	for len(b) > 0 && r.pos < r.size {
		var k int
		if pre := int64(len(r.l.prefix)); r.pos < pre {
			k = copy(b, r.l.prefix[r.pos:])
		} else {
			c, off := (r.pos-pre)/EncChunkSize, (r.pos-pre)%EncChunkSize
			if c != r.cached {
				r.sealChunk(c)
			}
			k = copy(b, r.sealed[off:])
		}
		b, n, r.pos = b[k:], n+k, r.pos+int64(k)
	}
	return n, nil
}

// sealChunk seals chunk c of the part's stream into r.sealed.
func (r *SealedReader) sealChunk(c int64) {
	from := c * ChunkSize
	to := min(from+ChunkSize, r.l.stream)
	// Find the piece holding from; a chunk inside one piece is sealed
	// from it, one that straddles pieces is gathered first.
	var chunk []byte
	r.plain = r.plain[:0]
	var at int64
	for _, pc := range r.l.pieces {
		lo, hi := at, at+int64(len(pc))
		at = hi
		if hi <= from || len(pc) == 0 {
			continue
		}
		if lo >= to {
			break
		}
		seg := pc[max(from, lo)-lo : min(to, hi)-lo]
		if lo <= from && hi >= to {
			chunk = seg
			break
		}
		if r.plain == nil {
			// The chunk's own size: a small object's only chunk is far
			// from a whole one (a later, longer chunk grows it).
			r.plain = make([]byte, 0, to-from)
		}
		r.plain = append(r.plain, seg...)
		chunk = r.plain
	}
	if r.sealed == nil {
		r.sealed = make([]byte, 0, to-from+chacha20poly1305.Overhead)
	}
	r.sealed = sealChunks(r.sealed[:0], r.aead, r.l.counter+uint64(c), r.l.last && c == r.l.chunks-1, chunk)
	r.cached = c
}

// Seek implements io.Seeker.
func (r *SealedReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("sealed part: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("sealed part: negative position")
	}
	r.pos = offset
	return offset, nil
}

// Encode is the one-part form: the whole object, sealed in one call.
func (w *Writer) Encode(plain []byte) ([]byte, error) {
	compressed, err := w.Compress(plain)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	out, _, err := w.Seal(nil, w.Start(), plain, compressed, true, nil)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return out, nil
}

// SealedSizeBound returns an upper bound of Seal's output for a part of n
// source bytes, first or last, for buffer sizing. It assumes the limits this
// package enforces: an age header of at most 64 KiB, a META payload of at
// most 64 KiB and at most 10000 parts.
func SealedSizeBound(n int64) int64 {
	n = max(n, 0)
	compressed := CompressedBound(n)
	tail := max(padLen(1), int64(skippableHeaderLen+maxSkippable))
	stream := skippableHeaderLen + maxMetaPayload + compressed + tail
	chunks := (stream + ChunkSize - 1) / ChunkSize
	return maxHeaderSize + nonceSize + stream + chunks*chacha20poly1305.Overhead
}

// trailerIndex checks the caller's part boundaries and returns the TRAILER
// index: index then start, as (plain offset, stream offset) pairs.
func trailerIndex(index []Boundary, start Boundary) ([]IndexEntry, error) {
	all := append(index[:len(index):len(index)], start)
	if len(all) > maxParts {
		return nil, fmt.Errorf("%d parts, more than %d", len(all), maxParts)
	}
	out := make([]IndexEntry, len(all))
	for i, b := range all {
		if i == 0 && (b.Plain != 0 || b.Chunk != 0) {
			return nil, errors.New("index does not start with the first part")
		}
		if i > 0 && (b.Chunk <= all[i-1].Chunk || b.Plain < all[i-1].Plain) {
			return nil, fmt.Errorf("index entry %d out of order", i)
		}
		out[i] = IndexEntry{Plain: b.Plain, Stream: int64(b.Chunk) * ChunkSize}
	}
	return out, nil
}

// checkCompressed checks without decompressing that b is a sequence of zstd
// data frames whose declared content sizes add up to n.
func checkCompressed(b []byte, n int) error {
	r := &sliceFrames{}
	r.Reset(b)
	var buf []byte // the frame headers: readFrame skips the blocks
	var total int64
	for frames := 0; ; frames++ {
		var f frame
		var err error
		f, buf, err = readFrame(r, buf)
		if err != nil {
			if err == io.EOF && frames > 0 {
				break
			}
			return err
		}
		if !f.data {
			return errors.New("not a zstd data frame")
		}
		total += f.contentSize
	}
	if total != int64(n) {
		return fmt.Errorf("frames hold %d bytes, the part has %d", total, n)
	}
	return nil
}

func restoreHash(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("hash state: %w", err)
	}
	return h, nil
}

func normalizeLevel(c Compression) (int, error) {
	switch {
	case !c.Zstd:
		return 0, nil
	case c.Level == 0:
		return 3, nil
	case c.Level < 1 || c.Level > 19:
		return 0, fmt.Errorf("zstd level %d out of range 1..19", c.Level)
	}
	return c.Level, nil
}

// fingerprint names everything that determines Compress's output. With Raw
// blocks that is the format version alone; with zstd it adds the
// klauspost/compress version (from the build info), the architecture (the
// encoder has assembly paths) and the level.
func fingerprint(zstdOn bool, level int) string {
	if !zstdOn {
		return fmt.Sprintf("voyageur-format-%d raw", FormatVersion)
	}
	return fmt.Sprintf("voyageur-format-%d github.com/klauspost/compress@%s %s zstd-level-%d", FormatVersion, compressVersion(), runtime.GOARCH, level)
}

// compressVersion is the klauspost/compress module version in this build.
// When the build info does not tell, it is "unknown-" and a random suffix
// drawn once per process, so that no other process can resume the state.
var compressVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != "github.com/klauspost/compress" {
				continue
			}
			if d.Replace != nil {
				d = d.Replace
			}
			if d.Version != "" {
				return d.Version
			}
		}
	}
	b := make([]byte, 8)
	rand.Read(b)
	return "unknown-" + hex.EncodeToString(b)
})

var encoders struct {
	sync.Mutex
	m map[int]*zstd.Encoder
}

// encoderOptions are the encoder options for a zstd CLI level. They are part
// of format version 1: changing them changes the output, which requires a new
// format version (and so a new fingerprint). EncodeAll runs each frame on one
// goroutine; the concurrency option only sizes the pool of encoder states
// that concurrent Compress calls draw from and does not change the output
// (TestCompressDeterministic checks it). The lower-memory history buffer
// (window plus one block instead of two windows) holds a whole frame, so it
// never shifts and the output is the same (TestLowerEncoderMemSameOutput),
// for 8 MiB less per encoder state.
func encoderOptions(level int) []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(true),
		zstd.WithWindowSize(FrameSize),
		zstd.WithSingleSegment(true), // every frame declares its content size
		zstd.WithLowerEncoderMem(true),
	}
}

// encoderFor returns the shared encoder for a zstd CLI level.
func encoderFor(level int) (*zstd.Encoder, error) {
	encoders.Lock()
	defer encoders.Unlock()
	if e := encoders.m[level]; e != nil {
		return e, nil
	}
	e, err := zstd.NewWriter(nil, encoderOptions(level)...)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	if encoders.m == nil {
		encoders.m = make(map[int]*zstd.Encoder)
	}
	encoders.m[level] = e
	return e, nil
}
