package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

const (
	minNameSecret = 32
	maxNameSecret = 1 << 20
)

// HashedName returns the destination name of a source key under hashed
// names: the lowercase hex HMAC-SHA256 of key (its UTF-8 bytes) keyed with
// secret, plus ".age". Without the secret the provider cannot tell which
// source key a name stands for, nor test a guess.
func HashedName(secret []byte, key string) string {
	m := hmac.New(sha256.New, secret)
	io.WriteString(m, key)
	return hex.EncodeToString(m.Sum(nil)) + ".age"
}

// LoadNameSecret reads the name secret: the whole content of the file at
// path, used as is (a trailing newline is part of the secret). The file must
// hold at least 32 bytes (and at most 1 MiB). Errors name the path, never
// the content.
func LoadNameSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load name secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxNameSecret+1))
	if err != nil {
		return nil, fmt.Errorf("load name secret %s: %w", path, err)
	}
	switch {
	case len(b) < minNameSecret:
		return nil, fmt.Errorf("load name secret %s: %d bytes, need at least %d (e.g. head -c 32 /dev/urandom > %s)", path, len(b), minNameSecret, path)
	case len(b) > maxNameSecret:
		return nil, fmt.Errorf("load name secret %s: larger than %d bytes", path, maxNameSecret)
	}
	return b, nil
}
