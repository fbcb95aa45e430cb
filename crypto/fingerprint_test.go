package crypto

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestFingerprintKey(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	k, err := FingerprintKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	// HKDF-SHA256 by the RFC 5869 steps: extract with an empty salt
	// (HashLen zero bytes), then one block of expand.
	ext := hmac.New(sha256.New, make([]byte, sha256.Size))
	ext.Write(secret)
	exp := hmac.New(sha256.New, ext.Sum(nil))
	exp.Write([]byte("voyageur replica fingerprint v1\x01"))
	if want := exp.Sum(nil); !bytes.Equal(k, want) {
		t.Errorf("key %x, want %x", k, want)
	}
	if std, _ := hkdf.Key(sha256.New, secret, nil, fingerprintInfo, 32); !bytes.Equal(k, std) {
		t.Errorf("key differs from crypto/hkdf")
	}
	// The key is no hashed name: not the name of its own info string.
	if hex.EncodeToString(k)+".age" == HashedName(secret, fingerprintInfo) {
		t.Error("fingerprint key equals a hashed name")
	}
	plain, err := FingerprintKey(nil)
	if err != nil || bytes.Equal(plain, k) || len(plain) != 32 {
		t.Errorf("key without a secret: %x, %v", plain, err)
	}
}

func TestFingerprint(t *testing.T) {
	k1, _ := FingerprintKey(bytes.Repeat([]byte{1}, 32))
	k2, _ := FingerprintKey(bytes.Repeat([]byte{2}, 32))
	base := Fingerprint(k1, "age", "daily/a.csv", 100, "0cc175b9c0f1b6a831c399e269772661")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(base) {
		t.Fatalf("fingerprint %q is not 32 hex digits", base)
	}
	if again := Fingerprint(k1, "age", "daily/a.csv", 100, "0cc175b9c0f1b6a831c399e269772661"); again != base {
		t.Errorf("not deterministic: %s, %s", base, again)
	}
	// Every input changes it, and field boundaries are unambiguous.
	for name, fp := range map[string]string{
		"key":        Fingerprint(k2, "age", "daily/a.csv", 100, "0cc175b9c0f1b6a831c399e269772661"),
		"format":     Fingerprint(k1, "", "daily/a.csv", 100, "0cc175b9c0f1b6a831c399e269772661"),
		"source key": Fingerprint(k1, "age", "daily/b.csv", 100, "0cc175b9c0f1b6a831c399e269772661"),
		"size":       Fingerprint(k1, "age", "daily/a.csv", 101, "0cc175b9c0f1b6a831c399e269772661"),
		"etag":       Fingerprint(k1, "age", "daily/a.csv", 100, "92eb5ffee6ae2fec3ad71c777531578f"),
		"boundary":   Fingerprint(k1, "ag", "edaily/a.csv", 100, "0cc175b9c0f1b6a831c399e269772661"),
	} {
		if fp == base {
			t.Errorf("changing the %s keeps the fingerprint", name)
		}
	}
}

// TestSealedFormat: the format names the set of recipients, whatever
// their order or repetitions, by the SHA-256 of their sorted public keys.
func TestSealedFormat(t *testing.T) {
	var rs []age.Recipient
	var keys []string
	for range 3 {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, id.Recipient())
		keys = append(keys, id.Recipient().String())
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	want := "age;r=" + hex.EncodeToString(sum[:])
	for name, set := range map[string][]age.Recipient{
		"configured order": rs,
		"reversed":         {rs[2], rs[1], rs[0]},
		"repeated":         {rs[1], rs[0], rs[2], rs[0]},
	} {
		if got, err := SealedFormat(set); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if fewer, _ := SealedFormat(rs[:2]); fewer == want {
		t.Error("dropping a recipient keeps the format")
	}
	if _, err := SealedFormat([]age.Recipient{opaque{}}); err == nil {
		t.Error("a recipient without a public key string was accepted")
	}
}

// opaque is a recipient with no string form.
type opaque struct{}

func (opaque) Wrap([]byte) ([]*age.Stanza, error) { return nil, nil }
