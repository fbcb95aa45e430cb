package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/journal"
)

// TestCompletionUnknownShell: a shell cobra cannot complete is a usage
// error, not help text with exit 0.
func TestCompletionUnknownShell(t *testing.T) {
	if code, stdout, stderr := runCLI(t, "completion", "tcsh"); code != exitUsage || !strings.Contains(stderr, "tcsh") {
		t.Errorf("completion tcsh: exit %d, stdout %q, stderr %q; want 2 naming tcsh", code, stdout, stderr)
	}
}

// TestStatusJob: status --job shows that job only; an unknown one is a
// usage error naming the jobs.
func TestStatusJob(t *testing.T) {
	dir := t.TempDir()
	path := fsConfig(t, dir, "", "", `  - {name: ledgers, source: "a:src", destination: "a:dst"}
  - {name: statements, source: "a:src2", destination: "a:dst2"}
`)
	code, stdout, stderr := runCLI(t, "status", "-c", path, "--job", "statements")
	if code != exitOK || !strings.Contains(stdout, "job statements") || strings.Contains(stdout, "job ledgers") {
		t.Errorf("status --job statements: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "status", "-c", path, "--job", "nope"); code != exitUsage || !strings.Contains(stderr, "ledgers") {
		t.Errorf("status --job nope: exit %d, %q", code, stderr)
	}
}

// TestStatusRunningUploads: uploads in the snapshot of a running sync are
// in progress, not interrupted.
func TestStatusRunningUploads(t *testing.T) {
	var running, stopped bytes.Buffer
	st := jobStatus{Job: "ledgers", Uploads: 2}
	writeHumanStatus(&running, st, true)
	writeHumanStatus(&stopped, st, false)
	if !strings.Contains(running.String(), "uploads in progress: 2") || strings.Contains(running.String(), "interrupted") {
		t.Errorf("running:\n%s", running.String())
	}
	if !strings.Contains(stopped.String(), "interrupted uploads: 2") {
		t.Errorf("stopped:\n%s", stopped.String())
	}
}

// TestMetricsBeyondLoopbackWarns: --metrics :PORT binds every interface,
// and says so, as the webhook does.
func TestMetricsBeyondLoopbackWarns(t *testing.T) {
	j, err := journal.Open(t.TempDir()+"/j.db", lockTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for addr, warn := range map[string]bool{":0": true, "127.0.0.1:0": false} {
		var logs bytes.Buffer
		stop, err := newMetrics(j, []string{"ledgers"}).serve(context.Background(), addr, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if got := strings.Contains(logs.String(), "beyond loopback"); got != warn {
			t.Errorf("--metrics %s: warning %v, want %v:\n%s", addr, got, warn, logs.String())
		}
	}
}
