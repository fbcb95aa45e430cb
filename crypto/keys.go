package crypto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"filippo.io/age"
)

// maxKeyFile bounds recipients and identity files, as age does.
const maxKeyFile = 16 << 20

// ParseRecipient parses an age public key: X25519 ("age1…") or hybrid
// post-quantum ("age1pq1…"). The error names the bad string (public keys are
// not secret), except when it looks like a secret key.
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "AGE-SECRET-KEY-"), strings.HasPrefix(s, "AGE-PLUGIN-"):
		return nil, errors.New("parse recipient: this is a secret key (identity), not a recipient; use its public key (age-keygen -y)")
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("parse recipient %q: %w", s, err)
		}
		return r, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("parse recipient %q: %w", s, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("parse recipient %q: not an age public key (age1… or age1pq1…)", s)
}

// LoadRecipientsFile reads an age recipients file: one public key per line,
// lines starting with "#" and blank lines ignored. It accepts the keys
// ParseRecipient does and needs at least one.
func LoadRecipientsFile(path string) ([]age.Recipient, error) {
	lines, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("load recipients: %w", err)
	}
	var rs []age.Recipient
	for _, l := range lines {
		r, err := ParseRecipient(l.text)
		if err != nil {
			return nil, fmt.Errorf("load recipients %s line %d: %w", path, l.n, err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("load recipients %s: no recipients", path)
	}
	return rs, nil
}

// LoadIdentities reads an age identity file (as written by age-keygen or
// GenerateIdentity): X25519 ("AGE-SECRET-KEY-1…") and hybrid post-quantum
// ("AGE-SECRET-KEY-PQ-1…") keys, one per line, "#" comments and blank lines
// ignored. Errors name the path and line, never the key.
func LoadIdentities(path string) ([]age.Identity, error) {
	lines, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	var ids []age.Identity
	for _, l := range lines {
		var id age.Identity
		switch {
		case strings.HasPrefix(l.text, "AGE-SECRET-KEY-PQ-1"):
			id, err = age.ParseHybridIdentity(l.text)
		case strings.HasPrefix(l.text, "AGE-SECRET-KEY-1"):
			id, err = age.ParseX25519Identity(l.text)
		default:
			err = errors.New("unknown type")
		}
		if err != nil {
			// The parser's message may quote part of the key: drop it.
			return nil, fmt.Errorf("load identities %s line %d: not a valid age identity (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…)", path, l.n)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("load identities %s: no identities", path)
	}
	return ids, nil
}

type keyLine struct {
	n    int
	text string
}

// readKeyFile returns the non-blank, non-comment lines of an age key file.
func readKeyFile(path string) ([]keyLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxKeyFile)
	}
	var lines []keyLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxKeyFile)
	for n := 1; sc.Scan(); n++ {
		t := strings.TrimSuffix(sc.Text(), "\r")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		lines = append(lines, keyLine{n: n, text: t})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return lines, nil
}

// GenerateIdentity returns a new identity file, in age-keygen's format:
//
//	# created: 2026-01-02T15:04:05Z
//	# public key: age1…
//	AGE-SECRET-KEY-1…
//
// and the recipient string. With pq it is a hybrid post-quantum key
// (age1pq1…, AGE-SECRET-KEY-PQ-1…), which age 1.1 cannot use. The file is
// secret: write it with mode 0600.
func GenerateIdentity(pq bool) (file []byte, recipient string, err error) {
	var secret string
	if pq {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return nil, "", fmt.Errorf("generate identity: %w", err)
		}
		secret, recipient = id.String(), id.Recipient().String()
	} else {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, "", fmt.Errorf("generate identity: %w", err)
		}
		secret, recipient = id.String(), id.Recipient().String()
	}
	file = fmt.Appendf(nil, "# created: %s\n# public key: %s\n%s\n", time.Now().Format(time.RFC3339), recipient, secret)
	return file, recipient, nil
}
