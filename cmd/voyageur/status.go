package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/journal"
)

type statusOptions struct {
	config string
	job    string
	json   bool
}

func newStatusCmd(g *globals) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status -c FILE [--job NAME] [--json]",
		Short: "Show each job's replicated objects, queue, interrupted uploads, last run and failures",
		Long: `status reads the journal and prints, for each job, the number of replicated
objects, the queued changes, interrupted uploads, the last run and the keys
that keep failing. While voyageur sync or watch runs, it holds the journal;
status then prints the snapshot the run refreshes every 5 seconds. Status
opens the journal read-only: it never creates or changes it.`,
		Example: `  voyageur status -c /etc/voyageur/voyageur.yaml
  voyageur status -c voyageur.yaml --job ledgers
  voyageur status -c voyageur.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	cmd.Flags().StringVar(&o.job, "job", "", "show only this job")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON on stdout")
	g.addJournalFlag(cmd.Flags())
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// jobStatus is what status reports per job; it holds no secrets.
type jobStatus struct {
	Job         string         `json:"job"`
	Source      string         `json:"source"`
	Destination string         `json:"destination"`
	Replicated  int            `json:"replicated_objects"`
	Queued      int            `json:"queued"`
	Uploads     int            `json:"interrupted_uploads"`
	LastRun     *lastRunStatus `json:"last_run,omitempty"`
	LastSuccess *time.Time     `json:"last_success,omitempty"`
	Failures    []queuedError  `json:"failures,omitempty"`
	// Failed are the changes that failed permanently: not retried, shown
	// until voyageur forget (or a new change of the key) clears them.
	Failed []queuedError `json:"failed,omitempty"`
}

// lastRunStatus is a journal.Run under the names status prints.
type lastRunStatus struct {
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Complete     bool      `json:"complete"` // the listing completed
	Copied       int64     `json:"copied"`
	Skipped      int64     `json:"skipped"`
	Deleted      int64     `json:"deleted"`
	Failed       int64     `json:"failed"`
	BytesRead    int64     `json:"bytes_read"`
	BytesWritten int64     `json:"bytes_written"`
	Error        string    `json:"error,omitempty"`
}

type queuedError struct {
	Key      string `json:"key"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
}

func runStatus(o statusOptions, g *globals, stdout, stderr io.Writer) error {
	cfg, err := LoadConfigWithoutSecrets(o.config, g.logger(stderr))
	if err == nil {
		g.applyJournal(cfg)
	}
	if err != nil {
		return err
	}
	if cfg.Jobs, err = selectJobs(cfg, o.job); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Journal); errors.Is(err, fs.ErrNotExist) {
		// Nothing has run yet: say so without creating the journal.
		out := make([]jobStatus, len(cfg.Jobs))
		for i, jc := range cfg.Jobs {
			out[i] = jobStatus{Job: jc.Name, Source: jc.Source.String(), Destination: jc.Destination.String()}
		}
		if o.json {
			return json.NewEncoder(stdout).Encode(map[string]any{"journal": cfg.Journal, "jobs": out})
		}
		fmt.Fprintf(stdout, "(no journal at %s yet: nothing has run)\n", cfg.Journal)
		for _, st := range out {
			writeHumanStatus(stdout, st, false)
		}
		return nil
	}
	j, err := openJournalReadOnly(cfg)
	if errors.Is(err, journal.ErrLocked) {
		// A running sync or watch holds the journal: answer from its
		// snapshot.
		snap, serr := readSnapshot(cfg.Journal, time.Now())
		if serr != nil {
			return err
		}
		snap.Jobs = slices.DeleteFunc(snap.Jobs, func(st jobStatus) bool { return o.job != "" && st.Job != o.job })
		if o.json {
			return json.NewEncoder(stdout).Encode(snap)
		}
		fmt.Fprintf(stdout, "(from the running %s, pid %d, as of %s)\n", snap.Command, snap.Pid, snap.Taken.Local().Format(time.RFC3339))
		for _, st := range snap.Jobs {
			writeHumanStatus(stdout, st, true)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer j.Close()
	out, err := collectAll(j, cfg)
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(map[string]any{"journal": cfg.Journal, "jobs": out})
	}
	for _, st := range out {
		writeHumanStatus(stdout, st, false)
	}
	return nil
}

func collectStatus(jb *journal.Section, jc JobConfig) (jobStatus, error) {
	st := jobStatus{Job: jc.Name, Source: jc.Source.String(), Destination: jc.Destination.String()}
	var err error
	if st.Replicated, err = jb.IndexCount(); err != nil {
		return st, err
	}
	if st.Queued, err = jb.QueueLen(); err != nil {
		return st, err
	}
	if st.Uploads, err = jb.UploadCount(); err != nil {
		return st, err
	}
	runs, err := jb.Runs(100)
	if err != nil {
		return st, err
	}
	if len(runs) > 0 {
		r := runs[0]
		st.LastRun = &lastRunStatus{
			Started: r.Started, Finished: r.Finished, Complete: r.Complete,
			Copied: r.Copied, Skipped: r.Skipped, Deleted: r.Deleted, Failed: r.Failed,
			BytesRead: r.BytesRead, BytesWritten: r.BytesWritten, Error: r.Error,
		}
	}
	for _, r := range runs {
		if r.Complete && r.Failed == 0 && r.Error == "" {
			t := r.Finished
			st.LastSuccess = &t
			break
		}
	}
	pending, err := jb.Pending(0, 20)
	if err != nil {
		return st, err
	}
	for _, c := range pending {
		if c.LastError != "" {
			st.Failures = append(st.Failures, queuedError{Key: c.Key, Attempts: c.Attempts, Error: c.LastError})
		}
	}
	failed, err := jb.Failed(20)
	if err != nil {
		return st, err
	}
	for _, c := range failed {
		st.Failed = append(st.Failed, queuedError{Key: c.Key, Attempts: c.Attempts, Error: c.LastError})
	}
	return st, nil
}

// writeHumanStatus prints one job's status; running says that a sync or
// watch holds the journal, whose uploads are then under way rather than
// interrupted.
func writeHumanStatus(w io.Writer, st jobStatus, running bool) {
	uploads := "interrupted uploads:"
	if running {
		uploads = "uploads in progress:"
	}
	fmt.Fprintf(w, "job %s: %s -> %s\n", st.Job, st.Source, st.Destination)
	fmt.Fprintf(w, "  replicated objects: %d\n  queued changes:     %d\n  %s %d\n", st.Replicated, st.Queued, uploads, st.Uploads)
	if r := st.LastRun; r != nil {
		fmt.Fprintf(w, "  last run: %s (%s): copied %d, skipped %d, deleted %d, failed %d\n",
			r.Finished.Local().Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Millisecond), r.Copied, r.Skipped, r.Deleted, r.Failed)
		if r.Error != "" {
			fmt.Fprintf(w, "  last run error: %s\n", termSafe(r.Error))
		}
	} else {
		fmt.Fprintln(w, "  last run: never")
	}
	if st.LastSuccess != nil {
		fmt.Fprintf(w, "  last complete success: %s\n", st.LastSuccess.Local().Format(time.RFC3339))
	}
	for _, f := range st.Failures {
		fmt.Fprintf(w, "  failing: %s (%d attempts): %s\n", termSafe(f.Key), f.Attempts, termSafe(f.Error))
	}
	for _, f := range st.Failed {
		fmt.Fprintf(w, "  failed, not retried: %s: %s\n", termSafe(f.Key), termSafe(f.Error))
	}
	if len(st.Failed) > 0 {
		fmt.Fprintf(w, "  (clear with: voyageur forget -c FILE --job %s KEY...)\n", st.Job)
	}
}
