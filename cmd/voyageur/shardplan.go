package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/replicator"
)

type shardPlanOptions struct {
	config, job, out string
	shards           int
}

func newShardPlanCmd(g *globals) *cobra.Command {
	var o shardPlanOptions
	cmd := &cobra.Command{
		Use:   "shard-plan -c FILE --job NAME --shards N -o PLAN",
		Short: "List a job's source once and write the key ranges that split it into N equal shards",
		Long: `shard-plan lists the job's source once (one LIST request per 1000 keys) and
writes PLAN, a JSON file of N-1 source keys that cut it into N ranges holding
the same number of objects. Every shard of sync --shard I/N --shard-plan PLAN
then lists only its own range. A plan stays correct however the source
changes (the ranges always cover every key once); only the balance drifts,
so it is rewritten when the layout of the source has changed a lot.`,
		Example: `  voyageur shard-plan -c voyageur.yaml --job ledgers --shards 8 -o ledgers-8.json
  kubectl create configmap voyageur-plan --from-file=plan.json=ledgers-8.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runShardPlan(cmd.Context(), o, g, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.job, "job", "", "the job to plan (required)")
	f.IntVar(&o.shards, "shards", 0, "number of shards (required, at least 1)")
	f.StringVarP(&o.out, "output", "o", "", "the plan file to write (required)")
	for _, name := range []string{"config", "job", "shards", "output"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runShardPlan(ctx context.Context, o shardPlanOptions, g *globals, stderr io.Writer) error {
	if o.shards < 1 {
		return configErrorf("--shards %d: want at least 1", o.shards)
	}
	_, job, err := replicaJob(ctx, g, o.config, o.job, false, stderr)
	if err != nil {
		return err
	}
	plan, err := replicator.MakeShardPlan(ctx, job, o.shards)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return err
	}
	// Written whole or not at all: a pod must never read half a plan.
	tmp, err := os.CreateTemp(filepath.Dir(o.out), ".shard-plan-*")
	if err != nil {
		return fmt.Errorf("write shard plan %s: %w", o.out, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write shard plan %s: %w", o.out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write shard plan %s: %w", o.out, err)
	}
	if err := os.Rename(tmp.Name(), o.out); err != nil {
		return fmt.Errorf("write shard plan %s: %w", o.out, err)
	}
	g.logger(stderr).Info("shard plan written", "job", job.Name, "shards", o.shards, "keys", plan.Keys, "plan", o.out)
	return nil
}
