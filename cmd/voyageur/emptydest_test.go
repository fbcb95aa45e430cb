package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEmptyDestinationRefused: with the index holding replicas, a
// destination endpoint moved to an empty store (only its path changed, as
// an url would) makes sync, its dry run and watch exit 2 with the way
// forward, copying nothing; the original store still syncs.
func TestEmptyDestinationRefused(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "old/dst", "new/dst"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(dir, "src", "a.csv"), "a")
	config := func(store string) string {
		return fsConfig(t, dir, "", "  b: {type: fs, path: "+filepath.Join(dir, store)+"}\n",
			`  - {name: ledgers, source: "a:src", destination: "b:dst", events: [{webhook: "127.0.0.1:0"}]}
`)
	}
	if code, stdout, stderr := runCLI(t, "sync", "-c", config("old"), "-q"); code != exitOK {
		t.Fatalf("first sync: exit %d\n%s%s", code, stdout, stderr)
	}
	cfg := config("new")
	for _, args := range [][]string{{"sync"}, {"sync", "--dry-run"}, {"watch"}} {
		// A watch that does not refuse runs until the context ends.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr bytes.Buffer
		code := run(ctx, append(args, "-c", cfg), &stdout, &stderr)
		cancel()
		if code != exitUsage || !strings.Contains(stderr.String(), "lists no object") || !strings.Contains(stderr.String(), "new name") || strings.Contains(stdout.String(), "skipped 1") {
			t.Errorf("%s to an empty destination: exit %d, want 2 and the way forward\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, &stdout, &stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new", "dst", "a.csv")); !os.IsNotExist(err) {
		t.Errorf("the object was copied to the empty destination: %v", err)
	}
	if code, stdout, stderr := runCLI(t, "sync", "-c", config("old")); code != exitOK || !strings.Contains(stdout, "skipped 1") {
		t.Errorf("sync back to the store holding the replicas: exit %d\n%s%s", code, stdout, stderr)
	}
}
