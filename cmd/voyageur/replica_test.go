package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encryptedReplica syncs a few objects of an fs source to an fs replica
// with hashed names and returns the config and a matching identity file.
func encryptedReplica(t *testing.T) (cfg, identity string) {
	t.Helper()
	dir := t.TempDir()
	identity = filepath.Join(dir, "identity.txt")
	var stdout, stderr bytes.Buffer
	if err := runKeygen(keygenOptions{output: identity}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	recipient := strings.TrimSpace(strings.TrimPrefix(stderr.String(), "Public key: "))
	writeTestFile(t, filepath.Join(dir, "names.key"), strings.Repeat("k", 32))
	for _, name := range []string{"a.csv", "b.csv", "c.csv"} {
		if err := os.MkdirAll(filepath.Join(dir, "src", "in"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(dir, "src", "in", name), "ledger "+name)
	}
	cfg = filepath.Join(dir, "c.yaml")
	writeTestFile(t, cfg, `journal: `+filepath.Join(dir, "j.db")+`
endpoints:
  a: {type: fs, path: `+dir+`}
jobs:
  - name: ledgers
    source: a:src/in/
    destination: a:dst/vault/
    encryption: {recipients: ["`+recipient+`"], names: hashed, name_secret_file: `+filepath.Join(dir, "names.key")+`}
`)
	if code, stdout, stderr := runCLI(t, "sync", "-c", cfg, "-q"); code != exitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, stdout, stderr)
	}
	return cfg, identity
}

// TestWrongIdentity: ls and verify with an identity that opens no replica
// print one error with the hint, and no table header, and exit 1.
func TestWrongIdentity(t *testing.T) {
	cfg, identity := encryptedReplica(t)
	code, stdout, _ := runCLI(t, "ls", "-c", cfg, "--job", "ledgers", "--identity", identity)
	if code != exitOK || !strings.HasPrefix(stdout, "SIZE") || strings.Count(stdout, "\n") != 4 {
		t.Fatalf("ls: exit %d\n%s", code, stdout)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.txt")
	if err := runKeygen(keygenOptions{output: wrong}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ls", "-c", cfg, "--job", "ledgers", "--identity", wrong},
		{"ls", "-c", cfg, "--job", "ledgers", "--identity", wrong, "--json"},
		{"verify", "-c", cfg, "--job", "ledgers", "--identity", wrong},
	} {
		code, stdout, stderr := runCLI(t, args...)
		if code != exitFailed || stdout != "" || strings.Count(stderr, "\n") != 1 ||
			!strings.Contains(stderr, "the identity does not match the replica's recipients") ||
			!strings.HasSuffix(stderr, "(check --identity "+wrong+")\n") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want one error with the hint", strings.Join(args[:1], " "), code, stdout, stderr)
		}
	}
}
