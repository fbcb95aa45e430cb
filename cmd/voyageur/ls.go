package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

type lsOptions struct {
	config, job, identity, prefix, asOf string
	json                                bool
	shard                               shardFlags
}

func newLsCmd(g *globals) *cobra.Command {
	var o lsOptions
	cmd := &cobra.Command{
		Use:   "ls -c FILE --job NAME [--identity FILE] [--prefix P] [--as-of RFC3339] [--json]",
		Short: "List a job's replica by original names, sizes and times",
		Long: `ls lists what the job's destination holds, by original key. With hashed names
(or to see original sizes and times of encrypted replicas) it needs the
identity. It reads only the replica: neither the journal nor the source.`,
		Example: `  voyageur ls -c voyageur.yaml --job ledgers --identity /media/offline/identity.txt --prefix daily/2026-11/
  voyageur ls -c voyageur.yaml --job ledgers --identity id.txt --as-of 2026-11-24T18:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLs(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.job, "job", "", "the job whose replica to list (required)")
	f.StringVar(&o.identity, "identity", "", "age identity file")
	f.StringVar(&o.prefix, "prefix", "", "list only original keys starting with this prefix")
	f.StringVar(&o.asOf, "as-of", "", "list the replica as it was at this time (RFC 3339)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per line")
	o.shard.add(f)
	for _, name := range []string{"config", "job"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// lsEntry is one line of `ls --json`.
type lsEntry struct {
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	MTime        time.Time `json:"mtime"`
	ReplicaKey   string    `json:"replica_key"`
	ReplicaSize  int64     `json:"replica_size"`
	ReplicatedAt time.Time `json:"replicated_at"`
	VersionID    string    `json:"version_id,omitempty"`
}

func runLs(ctx context.Context, o lsOptions, g *globals, stdout, stderr io.Writer) error {
	_, job, err := replicaJob(ctx, g, o.config, o.job, false, stderr)
	if err != nil {
		return err
	}
	copts, err := catalogOptions(o.identity, o.prefix, o.asOf)
	if err != nil {
		return err
	}
	if copts.Range, err = o.shard.replicaRange(job); err != nil {
		return err
	}
	if job.Encryption != nil && job.Encryption.HashedNames && len(copts.Identities) == 0 {
		return configErrorf("job %s hides names (names: hashed): --identity FILE is required to list them", job.Name)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	enc := json.NewEncoder(stdout)
	// The header goes with the first row, or at the end of an empty
	// listing: a listing that fails at once (a wrong identity) prints
	// nothing but its error.
	header := false
	writeHeader := func() {
		if !o.json && !header {
			fmt.Fprintln(tw, "SIZE\tMODIFIED\tKEY")
			header = true
		}
	}
	failed := false
	for rep, err := range recovery.Catalog(ctx, job, copts) {
		if err != nil && rep.DestKey == "" {
			tw.Flush()
			return identityHint(err, o.identity)
		}
		if err != nil {
			fmt.Fprintf(stderr, "voyageur: %s: %s\n", termSafe(rep.DestKey), termSafe(err.Error()))
			failed = true
			continue
		}
		m := rep.Meta
		if o.json {
			if err := enc.Encode(lsEntry{Key: m.Key, Size: m.Size, MTime: m.MTime, ReplicaKey: rep.DestKey,
				ReplicaSize: rep.Size, ReplicatedAt: rep.LastModified, VersionID: rep.VersionID}); err != nil {
				return err
			}
			continue
		}
		writeHeader()
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Size, m.MTime.UTC().Format(time.RFC3339), termSafe(m.Key))
	}
	writeHeader()
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed {
		return errObjectsFailed
	}
	return nil
}
