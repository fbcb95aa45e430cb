package crypto

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

const (
	fileKeySize = 16
	nonceSize   = 16
	ageIntro    = "age-encryption.org/v1\n"
	// maxHeaderSize bounds the age header this package writes (about 40
	// hybrid post-quantum recipients, hundreds of X25519 ones).
	maxHeaderSize = 64 << 10
	// base64Columns is the line length of stanza bodies.
	base64Columns = 64
)

// b64 is age's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// hkdfKey derives a 32-byte key with HKDF-SHA256.
func hkdfKey(secret, salt []byte, info string) []byte {
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, secret, salt, []byte(info)), key); err != nil {
		panic("crypto: HKDF-SHA256 cannot produce 32 bytes: " + err.Error())
	}
	return key
}

// buildHeader wraps fileKey for every recipient and returns the encoded age
// header, MAC line included. As age.Encrypt does, it refuses recipients whose
// label sets differ (for example post-quantum and classic ones).
func buildHeader(fileKey []byte, recipients []age.Recipient) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("no recipients")
	}
	hdr := []byte(ageIntro)
	var first []string
	for i, r := range recipients {
		if r == nil {
			return nil, fmt.Errorf("recipient #%d is nil", i)
		}
		stanzas, labels, err := wrap(r, fileKey)
		if err != nil {
			return nil, fmt.Errorf("wrap file key for recipient #%d: %w", i, err)
		}
		slices.Sort(labels)
		if i == 0 {
			first = labels
		} else if !slices.Equal(first, labels) {
			return nil, incompatibleLabels(first, labels)
		}
		for _, s := range stanzas {
			if hdr, err = appendStanza(hdr, s); err != nil {
				return nil, fmt.Errorf("recipient #%d: %w", i, err)
			}
		}
	}
	hdr = append(hdr, "---"...)
	mac := hmac.New(sha256.New, hkdfKey(fileKey, nil, "header"))
	mac.Write(hdr)
	hdr = append(hdr, ' ')
	hdr = b64.AppendEncode(hdr, mac.Sum(nil))
	hdr = append(hdr, '\n')
	if len(hdr) > maxHeaderSize {
		return nil, fmt.Errorf("age header of %d bytes is larger than %d: too many recipients", len(hdr), maxHeaderSize)
	}
	return hdr, nil
}

func wrap(r age.Recipient, fileKey []byte) ([]*age.Stanza, []string, error) {
	if rl, ok := r.(age.RecipientWithLabels); ok {
		return rl.WrapWithLabels(fileKey)
	}
	s, err := r.Wrap(fileKey)
	return s, nil, err
}

func incompatibleLabels(a, b []string) error {
	if slices.Contains(a, "postquantum") != slices.Contains(b, "postquantum") {
		return errors.New("incompatible recipients: post-quantum (age1pq1…) and classic (age1… X25519) recipients can't be mixed, or the file would be vulnerable to quantum computers")
	}
	return fmt.Errorf("incompatible recipients: labels %q and %q can't be mixed", a, b)
}

// appendStanza encodes a recipient stanza as age does: "-> type args\n",
// then the body in base64 (no padding) in 64-column lines, the last line
// always shorter than 64 columns, possibly empty.
func appendStanza(dst []byte, s *age.Stanza) ([]byte, error) {
	if s == nil || !validArg(s.Type) {
		return nil, errors.New("invalid stanza type")
	}
	dst = append(dst, "-> "...)
	dst = append(dst, s.Type...)
	for _, a := range s.Args {
		if !validArg(a) {
			return nil, errors.New("invalid stanza argument")
		}
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	dst = append(dst, '\n')
	body := b64.EncodeToString(s.Body)
	for len(body) >= base64Columns {
		dst = append(dst, body[:base64Columns]...)
		dst = append(dst, '\n')
		body = body[base64Columns:]
	}
	dst = append(dst, body...)
	return append(dst, '\n'), nil
}

// validArg reports whether s is a non-empty string of visible ASCII, as the
// age spec requires of stanza types and arguments.
func validArg(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// checkHeader verifies with the age library that hdr parses and that its MAC
// is valid under fileKey.
func checkHeader(hdr, fileKey []byte) error {
	key, err := age.DecryptHeader(hdr, age.NewInjectedFileKeyIdentity(fileKey))
	if err != nil {
		return err
	}
	if !hmac.Equal(key, fileKey) {
		return errors.New("header does not carry the file key")
	}
	return nil
}

// setChunkNonce makes nonce STREAM's for chunk counter: an 11-byte
// big-endian counter (the top 3 bytes stay zero) and the last-chunk flag.
func setChunkNonce(nonce *[chacha20poly1305.NonceSize]byte, counter uint64, last bool) {
	binary.BigEndian.PutUint64(nonce[3:11], counter)
	nonce[11] = 0
	if last {
		nonce[11] = 1
	}
}

// sealChunks appends the STREAM encryption of the concatenation of pieces,
// split in ChunkSize chunks numbered from counter. Only when last is true
// does the final chunk carry the last-chunk flag. A non-last stream must be
// whole chunks. Taking the stream in pieces spares callers a copy of a whole
// part: a chunk inside one piece is sealed from it, and only a chunk that
// straddles pieces is gathered.
func sealChunks(dst []byte, aead cipher.AEAD, counter uint64, last bool, pieces ...[]byte) []byte {
	total := 0
	for _, p := range pieces {
		total += len(p)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	var gather []byte
	for total > 0 {
		n := min(total, ChunkSize)
		for len(pieces[0]) == 0 {
			pieces = pieces[1:]
		}
		var chunk []byte
		if len(pieces[0]) >= n {
			chunk, pieces[0] = pieces[0][:n], pieces[0][n:]
		} else {
			if gather == nil {
				gather = make([]byte, 0, ChunkSize)
			}
			gather = gather[:0]
			for len(gather) < n {
				take := min(n-len(gather), len(pieces[0]))
				gather = append(gather, pieces[0][:take]...)
				if pieces[0] = pieces[0][take:]; len(pieces[0]) == 0 {
					pieces = pieces[1:]
				}
			}
			chunk = gather
		}
		total -= n
		setChunkNonce(&nonce, counter, last && total == 0)
		dst = aead.Seal(dst, nonce[:], chunk, nil)
		counter++
	}
	return dst
}
