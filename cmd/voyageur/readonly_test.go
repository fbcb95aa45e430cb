package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDryRunAndStatusReadOnly: sync --dry-run creates no journal when
// there is none; on an existing journal made read-only (file and
// directory), it and status work and change no byte, mode or file.
func TestDryRunAndStatusReadOnly(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "dst"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(dir, "src", "a.csv"), "a")
	state := filepath.Join(dir, "state")
	journalPath := filepath.Join(state, "j.db")
	cfg := fsConfig(t, dir, journalPath, "", oneJob)

	code, stdout, stderr := runCLI(t, "sync", "-c", cfg, "--dry-run")
	if code != exitOK || !strings.Contains(stdout, "would have copied 1") {
		t.Fatalf("dry run before any run: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the dry run created the journal's directory: %v", err)
	}

	if code, stdout, stderr := runCLI(t, "sync", "-c", cfg, "-q"); code != exitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, stdout, stderr)
	}
	writeTestFile(t, filepath.Join(dir, "src", "b.csv"), "b")
	before, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(journalPath, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(state, 0o700) })

	code, stdout, stderr = runCLI(t, "sync", "-c", cfg, "--dry-run")
	if code != exitOK || !strings.Contains(stdout, "would have copied 1, skipped 1") {
		t.Errorf("dry run on a read-only journal: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "status", "-c", cfg)
	if code != exitOK || !strings.Contains(stdout, "replicated objects: 1") {
		t.Errorf("status on a read-only journal: exit %d\n%s%s", code, stdout, stderr)
	}
	after, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the journal's bytes changed")
	}
	if st, err := os.Stat(journalPath); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("the journal's mode changed: %v %v", st.Mode(), err)
	}
	if entries, err := os.ReadDir(state); err != nil || len(entries) != 1 {
		t.Errorf("the journal's directory holds %v (%v), want only the journal", entries, err)
	}
}
