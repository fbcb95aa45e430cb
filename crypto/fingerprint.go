package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"filippo.io/age"
)

// fingerprintInfo is the HKDF info of the fingerprint key; a new
// fingerprint layout gets a new one.
const fingerprintInfo = "voyageur replica fingerprint v1"

// FingerprintKey derives the key of replica fingerprints from a job's name
// secret: HKDF-SHA256(ikm = secret, salt = empty, info = "voyageur replica
// fingerprint v1"), 32 bytes. HKDF keys HMAC with the salt, not with the
// secret, so the fingerprint key is never a hashed name (HMAC keyed with the
// secret) of some source key, which the destination shows.
//
// A nil secret gives the one fixed key of jobs that store replicas in
// clear: their fingerprints are checksums anyone can compute, which tell
// nothing the replica's bytes do not.
func FingerprintKey(secret []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, fingerprintInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive fingerprint key: %w", err)
	}
	return k, nil
}

// Fingerprint returns the lowercase hex of the first 16 bytes of
// HMAC-SHA256(key, m), where m is format, source key, size and source ETag,
// each string preceded by its length (8 bytes big-endian) and the size as 8
// bytes big-endian. It names one state of a source object as one job stores
// it: without the key it cannot be computed, nor a guess about the source
// (its ETag is an MD5 of the data) be checked against it.
func Fingerprint(key []byte, format, srcKey string, size int64, etag string) string {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	for _, s := range []string{format, srcKey} {
		m.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(s))))
		m.Write([]byte(s))
	}
	m.Write(binary.BigEndian.AppendUint64(n[:0], uint64(size)))
	m.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(etag))))
	m.Write([]byte(etag))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// SealedFormat returns the fingerprint format of replicas sealed to
// recipients: "age;r=" and the lowercase hex SHA-256 of the recipients'
// public keys (age1…, as age prints them), sorted, without duplicates,
// joined by "\n". A replica sealed to other recipients has another
// fingerprint, so that a rebuild after a key rotation sends it again
// instead of adopting it; the order the recipients are configured in does
// not matter.
func SealedFormat(recipients []age.Recipient) (string, error) {
	keys := make([]string, len(recipients))
	for i, r := range recipients {
		s, ok := r.(fmt.Stringer)
		if !ok {
			return "", fmt.Errorf("fingerprint format: recipient %d (%T) has no public key string", i+1, r)
		}
		keys[i] = s.String()
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(keys), "\n")))
	return "age;r=" + hex.EncodeToString(sum[:]), nil
}
