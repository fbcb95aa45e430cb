package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// TestStatusWhileWatching: while a process holds the journal, status
// answers from the watch's snapshot; without a fresh one, it exits 3.
func TestStatusWhileWatching(t *testing.T) {
	dir := t.TempDir()
	path := fsConfig(t, dir, "", "", oneJob)
	cfg, err := LoadConfig(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(cfg.Journal, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()

	// No watch snapshot: the lock wins.
	if code, _, stderr := runCLI(t, "status", "-c", path); code != exitLocked || !strings.Contains(stderr, "locked") {
		t.Fatalf("status on a held journal without a snapshot: exit %d, %q", code, stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { snapshotter(ctx, j, cfg, "watch", slog.New(slog.DiscardHandler)); close(done) }()
	snap := snapshotPath(cfg.Journal)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(snap); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot within 5s")
		}
	}
	if st, err := os.Stat(snap); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("snapshot: %v, mode %v; want 0600", err, st.Mode())
	}
	code, stdout, stderr := runCLI(t, "status", "-c", path)
	if code != 0 || !strings.Contains(stdout, "(from the running watch, pid") || !strings.Contains(stdout, "job ledgers: a:src -> a:dst") {
		t.Errorf("status while watching: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "status", "-c", path, "--json")
	var s snapshot
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil || len(s.Jobs) != 1 || s.Pid != os.Getpid() {
		t.Errorf("status --json while watching: exit %d, %q (%v)", code, stdout, err)
	}

	// The watch stops: its snapshot goes with it.
	cancel()
	<-done
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Errorf("snapshot left after the watch stopped: %v", err)
	}

	// A snapshot left by a watch that died long ago is not believed.
	if err := writeSnapshot(j, cfg, "watch"); err != nil {
		t.Fatal(err)
	}
	if _, err := readSnapshot(cfg.Journal, time.Now().Add(time.Minute)); err == nil {
		t.Error("a minute-old snapshot was read as fresh")
	}
}
