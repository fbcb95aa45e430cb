package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/voyageur-ca/voyageur/replicator"
)

// shardFlags are --shard and --shard-plan, on the commands that split a
// job between workers (sync, restore, verify, ls).
type shardFlags struct{ shard, plan string }

func (s *shardFlags) add(f *pflag.FlagSet) {
	f.StringVar(&s.shard, "shard", "", "do only shard I of N (I/N, 0 <= I < N; auto/N takes I from JOB_COMPLETION_INDEX)")
	f.StringVar(&s.plan, "shard-plan", "", "split the keys as this plan (voyageur shard-plan) says, not evenly")
}

// parse returns the shard, nil when the run is not sharded.
func (s *shardFlags) parse() (*replicator.Shard, error) {
	if s.shard == "" {
		if s.plan != "" {
			return nil, configErrorf("--shard-plan %s: needs --shard I/N", s.plan)
		}
		return nil, nil
	}
	sh, err := replicator.ParseShard(s.shard, os.Getenv)
	if err != nil {
		return nil, configErrorf("--shard %q: %w", s.shard, err)
	}
	return &sh, nil
}

// layout returns the plan's source layout for job, or nil without a plan.
func (s *shardFlags) layout(job replicator.Job, sh replicator.Shard) (*replicator.Layout, error) {
	if s.plan == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(s.plan)
	if err != nil {
		return nil, configErrorf("--shard-plan: %w", err)
	}
	p, err := replicator.ReadShardPlan(raw)
	if err != nil {
		return nil, configErrorf("--shard-plan %s: %w", s.plan, err)
	}
	if p.Shards != sh.Count {
		return nil, configErrorf("--shard %s: the plan %s splits job %s into %d shards: run %d shards, or write a plan for %d with voyageur shard-plan --shards %d",
			sh, s.plan, p.Job, p.Shards, p.Shards, sh.Count, sh.Count)
	}
	l, err := p.Layout(job)
	if err != nil {
		return nil, configErrorf("--shard-plan %s: %w", s.plan, err)
	}
	return &l, nil
}

// sourceShard returns the part of job's source keys a sharded sync owns:
// as the plan says, or an even split of the key space after the source
// prefix (balanced when keys are uniform, as hashes and UUIDs are).
func (s *shardFlags) sourceShard(job replicator.Job) (*replicator.JobShard, error) {
	sh, err := s.parse()
	if sh == nil || err != nil {
		return nil, err
	}
	l, err := s.layout(job, *sh)
	if err != nil {
		return nil, err
	}
	if l == nil {
		even := replicator.EvenLayout(job.SourcePrefix, sh.Count, replicator.HexDigits)
		l = &even
	}
	return &replicator.JobShard{Shard: *sh, Range: l.Range(sh.Index)}, nil
}

// replicaRange returns the destination keys of the shard of a command that
// reads the replica: hashed names are uniform in hex, so they split evenly;
// plain names follow the plan when one is given.
func (s *shardFlags) replicaRange(job replicator.Job) (replicator.KeyRange, error) {
	sh, err := s.parse()
	if sh == nil || err != nil {
		return replicator.KeyRange{}, err
	}
	l, err := s.layout(job, *sh)
	if err != nil {
		return replicator.KeyRange{}, err
	}
	hashed := job.Encryption != nil && job.Encryption.HashedNames
	if l == nil || hashed {
		return replicator.EvenLayout(job.DestPrefix, sh.Count, replicator.HexDigits).Range(sh.Index), nil
	}
	return l.Mapped(job.SourcePrefix, job.DestPrefix).Range(sh.Index), nil
}

// addJournalFlag registers --journal on a command that uses the journal.
func (g *globals) addJournalFlag(f *pflag.FlagSet) {
	f.StringVar(&g.journal, "journal", "", "journal file (overrides the config's journal:, e.g. one per shard)")
}

// applyJournal puts --journal in place of the config's journal.
func (g *globals) applyJournal(cfg *Config) {
	if g.journal != "" {
		cfg.Journal = g.journal
	}
}
