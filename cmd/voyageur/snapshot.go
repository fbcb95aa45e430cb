package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// A running sync or watch holds the journal for as long as it runs, and
// bbolt lets no other process read it meanwhile. So that `status` still
// answers, the run writes what status would print to a snapshot file beside
// the journal every snapshotEvery, and removes it when it stops.
const (
	snapshotEvery = 5 * time.Second
	// snapshotFresh is the age beyond which status ignores a snapshot: the
	// run that wrote it died without removing it.
	snapshotFresh = 30 * time.Second
)

// snapshot is the file's content: status's JSON plus when it was taken.
type snapshot struct {
	Journal string      `json:"journal"`
	Taken   time.Time   `json:"snapshot_time"`
	Command string      `json:"command"` // sync | watch
	Pid     int         `json:"pid"`
	Jobs    []jobStatus `json:"jobs"`
}

func snapshotPath(journalPath string) string { return journalPath + ".status.json" }

// collectAll is status for every job of the config.
func collectAll(j *journal.Journal, cfg *Config) ([]jobStatus, error) {
	out := make([]jobStatus, 0, len(cfg.Jobs))
	for _, jc := range cfg.Jobs {
		st, err := collectStatus(j.Section(jc.Name), jc)
		if err != nil {
			return nil, fmt.Errorf("status of job %s: %w", jc.Name, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// writeSnapshot replaces the snapshot file atomically (0600, like the
// journal: failure messages name keys).
func writeSnapshot(j *journal.Journal, cfg *Config, command string) error {
	jobs, err := collectAll(j, cfg)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(snapshot{Journal: cfg.Journal, Taken: time.Now().UTC(), Command: command, Pid: os.Getpid(), Jobs: jobs})
	if err != nil {
		return err
	}
	path := snapshotPath(cfg.Journal)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".status-*.tmp")
	if err != nil {
		return fmt.Errorf("write status snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("write status snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write status snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write status snapshot: %w", err)
	}
	return nil
}

// snapshotter writes the snapshot of command (sync or watch) until ctx is
// done, then removes it. A failed write is logged once per kind of failure,
// never fatal: the run's job is replication.
func snapshotter(ctx context.Context, j *journal.Journal, cfg *Config, command string, log *slog.Logger) {
	defer os.Remove(snapshotPath(cfg.Journal))
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	var last string
	for {
		if err := writeSnapshot(j, cfg, command); err != nil && err.Error() != last {
			last = err.Error()
			log.Warn("status snapshot not written; voyageur status cannot answer while this run holds the journal", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// errNoSnapshot means there is no fresh snapshot to read.
var errNoSnapshot = errors.New("no fresh status snapshot")

// readSnapshot returns the snapshot beside the journal when it is fresh.
func readSnapshot(journalPath string, now time.Time) (*snapshot, error) {
	raw, err := os.ReadFile(snapshotPath(journalPath))
	if err != nil {
		return nil, errNoSnapshot
	}
	var s snapshot
	if err := json.Unmarshal(raw, &s); err != nil || now.Sub(s.Taken) > snapshotFresh {
		return nil, errNoSnapshot
	}
	return &s, nil
}
