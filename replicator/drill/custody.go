package drill

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"
)

// Custody is who can read a job's replica: the fingerprints of its
// recipients, which of them the drill's identity opens, which identity
// files readable on this host match one, and the replica's retention.
// Nothing in it is secret.
type Custody struct {
	// DrillIdentity lists the recipient fingerprints the --identity file
	// matches.
	DrillIdentity []string `json:"drill_identity_matches"`
	// HostIdentities are identity files found readable on this host, apart
	// from the one given to the drill, that match a recipient. A
	// replicating host should hold none.
	HostIdentities []HostIdentity `json:"host_identities"`
	Searched       []string       `json:"searched"`
	Retention      string         `json:"retention"`
}

// HostIdentity is one identity file found on the host.
type HostIdentity struct {
	Path    string   `json:"path"`
	Matches []string `json:"matches"`
}

// Fingerprint is the SHA-256, in hex, of a recipient's text form (age1…):
// `printf %s age1… | sha256sum` prints the same.
func Fingerprint(recipient string) string {
	s := sha256.Sum256([]byte(recipient))
	return "sha256:" + hex.EncodeToString(s[:])
}

// Fingerprints returns the sorted fingerprints of recipients.
func Fingerprints(recipients []age.Recipient) []string {
	out := []string{}
	for _, r := range recipients {
		if s, ok := r.(fmt.Stringer); ok {
			out = append(out, Fingerprint(s.String()))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// publicKeys returns the fingerprints of the recipients of identities.
func publicKeys(ids []age.Identity) []string {
	var out []string
	for _, id := range ids {
		switch k := id.(type) {
		case *age.X25519Identity:
			out = append(out, Fingerprint(k.Recipient().String()))
		case *age.HybridIdentity:
			out = append(out, Fingerprint(k.Recipient().String()))
		}
	}
	return out
}

// matching returns the fingerprints in have that are also in want.
func matching(have, want []string) []string {
	out := []string{}
	for _, f := range have {
		if slices.Contains(want, f) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// maxIdentityFile bounds what the host scan reads of one file: identity
// files are small, and the scan must not read a database.
const maxIdentityFile = 1 << 20

// scanHost looks for age identities in paths (files, or directories read
// one level deep), skipping skip (the drill's own identity files), and
// returns the files holding one that matches a recipient. It reads only
// files that are readable and small; what it finds is never returned, only
// where it is and which recipients it matches.
func scanHost(paths, skip, recipients []string) []HostIdentity {
	out := []HostIdentity{}
	seen := map[string]bool{}
	for _, s := range skip {
		if abs, err := filepath.Abs(s); err == nil {
			seen[abs] = true
		}
	}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			continue
		case st.IsDir():
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				if e.Type().IsRegular() {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		case st.Mode().IsRegular():
			files = append(files, p)
		}
	}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil || seen[abs] {
			continue
		}
		seen[abs] = true
		if m := matching(identitiesIn(abs), recipients); len(m) > 0 {
			out = append(out, HostIdentity{Path: abs, Matches: m})
		}
	}
	return out
}

// identitiesIn returns the recipient fingerprints of the age identities in
// one file (any line holding one, as age-keygen writes them or embedded in
// another file such as a SOPS keys.txt).
func identitiesIn(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile))
	if err != nil || !bytes.Contains(b, []byte("AGE-SECRET-KEY-")) {
		return nil
	}
	var ids []age.Identity
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxIdentityFile)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var id age.Identity
		switch {
		case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
			id, err = age.ParseHybridIdentity(line)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			id, err = age.ParseX25519Identity(line)
		default:
			continue
		}
		if err == nil {
			ids = append(ids, id)
		}
	}
	return publicKeys(ids)
}
