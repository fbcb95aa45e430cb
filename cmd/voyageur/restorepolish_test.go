package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreWrongIdentity: a restore with an identity that opens no
// replica prints its error once (not in the summary and again as the
// command's error) and leaves no target directory behind.
func TestRestoreWrongIdentity(t *testing.T) {
	cfg, _ := encryptedReplica(t)
	wrong := filepath.Join(t.TempDir(), "wrong.txt")
	if err := runKeygen(keygenOptions{output: wrong}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "restored")
	code, stdout, stderr := runCLI(t, "restore", "-c", cfg, "--job", "ledgers", "--identity", wrong, "--to", to)
	out := stdout + stderr
	if code != exitFailed || strings.Count(out, "does not match the replica's recipients") != 1 {
		t.Errorf("restore with a wrong identity: exit %d, want 1 and the error once\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Stat(to); !os.IsNotExist(err) {
		t.Errorf("the target directory was created: %v", err)
	}
}
