package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/voyageur-ca/voyageur/backends/minio"
	"github.com/voyageur-ca/voyageur/replicator/engine"
	"github.com/voyageur-ca/voyageur/replicator/events"
)

type watchOptions struct {
	config, job, metrics string
	shard                shardFlags
}

func newWatchCmd(g *globals) *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch -c FILE [--job NAME] [--metrics ADDR] [--shard I/N [--shard-plan PLAN]] [--journal PATH]",
		Short: "Replicate continuously from S3/MinIO event streams, with reconcile scans",
		Long: `watch keeps each job's replica within seconds of its source: a reconcile scan
at start, then the job's event sources (events: listen, sqs, webhook), a
reconcile after every reconnect and every rescan period (default 1h). Every
change is durable in the journal before its event is acknowledged. SIGTERM or
SIGINT stops intake, abandons work in flight at its last checkpoint (it
stays queued) and exits 0.

With --shard I/N, watch replicates only the shard's keys: its rescans list
only its range, and events of other keys are acknowledged and dropped (with
an SNS fan-out, each shard's queue has them all; docs/scaling.md).`,
		Example: `  voyageur watch -c /etc/voyageur/voyageur.yaml --metrics 127.0.0.1:9464
  voyageur watch -c voyageur.yaml --job ledgers
  voyageur watch -c voyageur.yaml --job ledgers --shard 1/4 --journal /var/lib/voyageur/ledgers-1-of-4.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatch(cmd.Context(), o, g, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.job, "job", "", "watch only this job")
	f.StringVar(&o.metrics, "metrics", "", "serve /metrics (Prometheus) and /healthz on this HOST:PORT")
	o.shard.add(f)
	g.addJournalFlag(f)
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runWatch(ctx context.Context, o watchOptions, g *globals, stderr io.Writer) error {
	log := g.logger(stderr)
	cfg, jobs, specs, err := loadJobs(ctx, o.config, o.job, true, log)
	if err != nil {
		return err
	}
	if err := checkResidency(cfg, jobs); err != nil {
		return err
	}
	if o.shard.plan != "" && o.job == "" {
		return configErrorf("--shard-plan %s: a plan is for one job: add --job", o.shard.plan)
	}
	for i := range specs {
		if specs[i].Shard, err = o.shard.sourceShard(specs[i]); err != nil {
			return err
		}
	}
	g.applyJournal(cfg)
	sources := make([][]events.EventSource, len(jobs))
	names := make([]string, len(jobs))
	for i, jc := range jobs {
		if sources[i], err = buildSources(ctx, cfg, jc, log); err != nil {
			return err
		}
		names[i] = jc.Name
	}
	limitMemory(specs, true)
	j, err := openJournal(cfg)
	if err != nil {
		return err
	}
	defer j.Close()
	m := newMetrics(j, names)
	if o.metrics != "" {
		stop, err := m.serve(ctx, o.metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	wg, wctx := errgroup.WithContext(ctx)
	wg.Go(func() error { snapshotter(wctx, j, cfg, "watch", log); return nil })
	for i, spec := range specs {
		wg.Go(func() error {
			return engine.Watch(wctx, j, spec, engine.WatchOptions{
				Sources: sources[i], Rescan: time.Duration(jobs[i].Rescan), Logger: log, Observer: m,
			})
		})
	}
	if err := wg.Wait(); err != nil {
		if errors.Is(err, engine.ErrRouteChanged) || errors.Is(err, engine.ErrDestinationEmpty) || errors.Is(err, engine.ErrShardChanged) {
			return &ConfigError{err}
		}
		return err
	}
	log.Info("watch stopped")
	return nil
}

// buildSources makes the job's event sources from its `events:` list.
func buildSources(ctx context.Context, cfg *Config, jc JobConfig, log *slog.Logger) ([]events.EventSource, error) {
	var out []events.EventSource
	src := cfg.Endpoints[jc.Source.Endpoint]
	for _, ev := range jc.Events {
		switch {
		case ev.Listen:
			mc, err := src.minioConfig(jc.Source.Bucket)
			if err != nil {
				return nil, configErrorf("job %s: events listen: %w", jc.Name, err)
			}
			b, err := minio.New(mc)
			if err != nil {
				return nil, configErrorf("job %s: events listen: %w", jc.Name, err)
			}
			out = append(out, &events.Listen{Bucket: b, Prefix: jc.Source.Prefix, Logger: log})
		case ev.SQS != "":
			s, err := sqsSource(ctx, ev, src, 0, log)
			if err != nil {
				return nil, configErrorf("job %s: events sqs: %w", jc.Name, err)
			}
			out = append(out, s)
		case ev.Webhook != "":
			out = append(out, &events.Webhook{Addr: ev.Webhook, Token: ev.Token, Logger: log})
		default:
			return nil, fmt.Errorf("job %s: an event source with nothing set", jc.Name) // validated when loading
		}
	}
	return out, nil
}
