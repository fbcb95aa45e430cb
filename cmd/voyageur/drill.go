package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/drill"
)

// EndpointLocation is an endpoint's `location:`: where a store that no
// provider preset knows is, as the operator declares it.
type EndpointLocation struct {
	Country  string `yaml:"country"`  // ISO 3166-1 alpha-2: CA
	Region   string `yaml:"region"`   // a city, a data centre
	Provider string `yaml:"provider"` // who runs it (default: self-hosted)
}

func (l *EndpointLocation) validate() error {
	if l == nil {
		return nil
	}
	if len(l.Country) != 2 || strings.Trim(strings.ToUpper(l.Country), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return fmt.Errorf("location.country: %q is not a two-letter country code (ISO 3166-1, e.g. CA)", l.Country)
	}
	return nil
}

// ObjectivesConfig is a job's `objectives:` block: the recovery targets a
// drill checks.
type ObjectivesConfig struct {
	RPO Duration `yaml:"rpo"`
	RTO Duration `yaml:"rto"`
}

// validateDrill checks a job's residency and objectives fields.
func (j *JobConfig) validateDrill(c *Config, field string) error {
	switch j.Residency {
	case "", "ca":
	default:
		return fmt.Errorf("line %d: %s.residency: %q (use ca, or leave it out)", j.line, field, j.Residency)
	}
	if o := j.Objectives; o != nil && o.RPO == 0 && o.RTO == 0 {
		return fmt.Errorf("line %d: %s.objectives: give rpo, rto or both (durations such as 15m, 4h)", j.line, field)
	}
	if _, err := drill.Locate(c.Endpoints[j.Destination.Endpoint].drillEndpoint()); err != nil {
		return fmt.Errorf("line %d: endpoints.%s: %w", c.Endpoints[j.Destination.Endpoint].line, j.Destination.Endpoint, err)
	}
	return nil
}

func (ep Endpoint) drillEndpoint() drill.Endpoint {
	d := drill.Endpoint{Type: ep.Type, URL: ep.URL, Region: ep.Region}
	if l := ep.Location; l != nil {
		d.Location = &drill.Location{Country: l.Country, Region: l.Region, Provider: l.Provider}
	}
	return d
}

// checkResidency refuses, for sync, watch and drill, a job with
// `residency: ca` whose destination is not known to be in Canada.
func checkResidency(cfg *Config, jobs []JobConfig) error {
	for _, jc := range jobs {
		if jc.Residency != "ca" {
			continue
		}
		d, err := drill.Locate(cfg.Endpoints[jc.Destination.Endpoint].drillEndpoint())
		if err != nil {
			return configErrorf("job %s: %w", jc.Name, err)
		}
		if d.InCanada == nil || !*d.InCanada {
			where := "not known to be in Canada"
			if d.InCanada != nil {
				where = "not in Canada"
			}
			return configErrorf("job %s: residency: ca, but destination %s (%s %s) is %s: %s", jc.Name, jc.Destination, d.Provider, d.Region, where, d.Basis)
		}
	}
	return nil
}

type drillOptions struct {
	config, identity, sampleBytes, report string
	jobs                                  []string
	sample                                int
	json, history                         bool
}

func newDrillCmd(g *globals) *cobra.Command {
	var o drillOptions
	cmd := &cobra.Command{
		Use:   "drill -c FILE --identity FILE [--job NAME]... [--sample N | --sample-bytes SIZE] [--report DIR] [--json]",
		Short: "Run a disaster-recovery drill: restore a sample, measure RTO and RPO, report residency and key custody",
		Long: `drill exercises each job's recovery as a disaster would see it, from the
destination alone: it restores a random sample (20 objects and at least 64 MiB
by default, with the largest object up to 1 GiB) into a temporary directory
through the normal restore path, checks every SHA-256 (against the source
where it still holds the version replicated), and measures the recovery time
(time to first byte, throughput, catalog time, the estimated time to restore
the whole job) and the recovery point (the oldest change not yet replicated).
It reports where the replica is (provider, region, in Canada or not), who
holds its keys, and checks the job's objectives.

It exits 0 when every check passed, 1 when any failed, 2 for configuration
errors. Each job's report is stored at its destination, encrypted to its
recipients; --history lists them. --report DIR also writes
drill-YYYYMMDDTHHMMSSZ.json and a self-contained .html page there.`,
		Example: `  voyageur drill -c voyageur.yaml --identity /media/offline/identity.txt --report /srv/drills
  voyageur drill -c voyageur.yaml --identity id.txt --job ledgers --sample-bytes 1GiB --json
  voyageur drill -c voyageur.yaml --identity id.txt --history`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrill(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.identity, "identity", "", "age identity file (required for encrypted jobs)")
	f.StringArrayVar(&o.jobs, "job", nil, "drill only this job (repeatable; default: every job)")
	f.IntVar(&o.sample, "sample", 0, "restore a random N objects (default 20, and at least 64 MiB)")
	f.StringVar(&o.sampleBytes, "sample-bytes", "", "restore random objects until SIZE is sampled (e.g. 1GiB)")
	f.StringVar(&o.report, "report", "", "write drill-YYYYMMDDTHHMMSSZ.json and .html into DIR")
	g.addJournalFlag(f)
	f.BoolVar(&o.json, "json", false, "print the report as one JSON object on stdout")
	f.BoolVar(&o.history, "history", false, "list the drills stored at the destinations, newest first")
	_ = cmd.MarkFlagRequired("config")
	cmd.MarkFlagsMutuallyExclusive("sample", "sample-bytes")
	cmd.MarkFlagsMutuallyExclusive("history", "report")
	return cmd
}

// drillJobs selects the jobs of repeated --job flags (all without one).
func drillJobs(cfg *Config, names []string) ([]JobConfig, error) {
	if len(names) == 0 {
		return cfg.Jobs, nil
	}
	var out []JobConfig
	for _, n := range names {
		js, err := selectJobs(cfg, n)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(j JobConfig) bool { return j.Name == n }) {
			out = append(out, js...)
		}
	}
	return out, nil
}

func runDrill(ctx context.Context, o drillOptions, g *globals, stdout, stderr io.Writer) error {
	started := time.Now()
	log := g.logger(stderr)
	if o.sample < 0 {
		return configErrorf("--sample %d: must be 1 or more", o.sample)
	}
	var sampleBytes int64
	if o.sampleBytes != "" {
		v, err := ParseSize(o.sampleBytes)
		if err != nil || v <= 0 {
			return configErrorf("--sample-bytes %q: not a positive size (examples: 64MiB, 1GiB)", o.sampleBytes)
		}
		sampleBytes = int64(v)
	}
	cfg, err := LoadConfig(o.config, log)
	if err != nil {
		return err
	}
	g.applyJournal(cfg)
	jobs, err := drillJobs(cfg, o.jobs)
	if err != nil {
		return err
	}
	if err := checkResidency(cfg, jobs); err != nil {
		return err
	}
	specs := make([]replicator.Job, len(jobs))
	encrypted := false
	for i, jc := range jobs {
		if specs[i], err = buildJob(ctx, cfg, jc, log, false); err != nil {
			return err
		}
		encrypted = encrypted || specs[i].Encryption != nil
	}
	var opts drill.Options
	if o.identity != "" {
		if opts.Identities, err = crypto.LoadIdentities(o.identity); err != nil {
			return configErrorf("--identity: %w", err)
		}
		opts.IdentityFiles = []string{o.identity}
	} else if encrypted {
		return configErrorf("--identity FILE is required: the drill decrypts the replicas of encrypted jobs")
	}
	if o.history {
		return drillHistory(ctx, specs, opts, o.json, stdout)
	}
	opts.Sample, opts.SampleBytes = o.sample, sampleBytes
	opts.HostPaths = identityPlaces(o.config, cfg.Journal)

	results := make([]drill.Result, len(jobs))
	for i, jc := range jobs {
		jo := opts
		jo.Endpoint = cfg.Endpoints[jc.Destination.Endpoint].drillEndpoint()
		if ob := jc.Objectives; ob != nil {
			jo.Objectives = drill.Objectives{RPO: time.Duration(ob.RPO), RTO: time.Duration(ob.RTO)}
		}
		jo.Journal, jo.JournalNote = readJournal(cfg, jc)
		res, err := drill.Run(ctx, specs[i], jo)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			log.Error("drill failed", "job", jc.Name, "err", identityHint(err, o.identity))
		}
		results[i] = res
	}
	report := drill.NewReport(started, currentVersion().String(), results)
	for i := range report.Jobs {
		if _, err := drill.Store(ctx, specs[i], report, report.Jobs[i]); err != nil {
			report.Jobs[i].Problems = append(report.Jobs[i].Problems, "the report could not be stored at the destination: "+err.Error())
			report.Jobs[i].Passed, report.Passed = false, false
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		writeDrillSummary(stdout, report)
	}
	if o.report != "" {
		jsonPath, htmlPath, err := report.WriteFiles(o.report)
		if err != nil {
			return fmt.Errorf("drill report: %w", err)
		}
		out := stdout
		if o.json {
			out = stderr // stdout holds the JSON alone
		}
		fmt.Fprintf(out, "report: %s\npage:   %s\n", jsonPath, htmlPath)
	}
	if !report.Passed {
		return errObjectsFailed
	}
	return nil
}

// readJournal reads what the job's journal says, if this host has it and
// no other run holds it; the drill goes on without it otherwise, saying why.
func readJournal(cfg *Config, jc JobConfig) (*drill.JournalFacts, string) {
	if _, err := os.Stat(cfg.Journal); errors.Is(err, fs.ErrNotExist) {
		return nil, "no journal at " + cfg.Journal + " (a recovery host has none)"
	}
	j, err := journal.Open(cfg.Journal, lockTimeout)
	if err != nil {
		return nil, fmt.Sprintf("%v (a running watch or sync holds it)", err)
	}
	defer j.Close()
	facts, err := drill.ReadJournal(j.Section(jc.Name), len(jc.Events) > 0)
	if err != nil {
		return nil, err.Error()
	}
	return facts, ""
}

// identityPlaces are where the drill looks for identity files on this host:
// beside the config and the journal, voyageur's and age's usual places, and
// SOPS's.
func identityPlaces(config, journalPath string) []string {
	places := []string{filepath.Dir(config), filepath.Dir(journalPath), "/etc/voyageur", "/etc/age"}
	if home, err := os.UserHomeDir(); err == nil {
		places = append(places, filepath.Join(home, ".config", "age"), filepath.Join(home, ".config", "sops", "age", "keys.txt"))
	}
	if f := os.Getenv("SOPS_AGE_KEY_FILE"); f != "" {
		places = append(places, f)
	}
	var out []string
	for _, p := range places {
		if abs, err := filepath.Abs(p); err == nil && !slices.Contains(out, abs) {
			out = append(out, abs)
		}
	}
	return out
}

// writeDrillSummary prints the report for a person: a verdict and the
// figures per job.
func writeDrillSummary(w io.Writer, r drill.Report) {
	for _, j := range r.Jobs {
		verdict := "PASSED"
		if !j.Passed {
			verdict = "FAILED"
		}
		rpo := "unknown"
		if j.RPOSeconds != nil {
			rpo = humanSeconds(*j.RPOSeconds)
		}
		in := "unknown"
		if d := j.Destination.InCanada; d != nil {
			in = map[bool]string{true: "yes", false: "no"}[*d]
		}
		fmt.Fprintf(w, "%s: %s: sampled %d, verified %d, failed %d; RTO estimate %s (restore %s/s, first byte %s, catalog %s); RPO %s\n",
			j.Job, verdict, j.Sampled, j.Verified, len(j.Failed), humanSeconds(j.RTOSecondsEstimate),
			humanBytes(int64(j.RestoreBytesPerSecond)), humanSeconds(j.FirstByteSeconds), humanSeconds(j.CatalogSeconds), rpo)
		where := strings.TrimSpace(j.Destination.Provider + " " + j.Destination.Region)
		fmt.Fprintf(w, "  destination %s, in Canada: %s; %d recipients; identities on this host besides --identity: %d; retention %s\n",
			where, in, len(j.Recipients), len(j.Custody.HostIdentities), j.Custody.Retention)
		if j.ServeNote != "" {
			fmt.Fprintf(w, "  failover path (voyageur serve): %s\n", j.ServeNote)
		} else {
			fmt.Fprintf(w, "  failover path (voyageur serve): %d objects read again with the same SHA-256 (%s/s)\n",
				j.ServeVerified, humanBytes(int64(j.ServeBytesPerSecond)))
		}
		for _, f := range j.Failed {
			fmt.Fprintf(w, "  failed %s: %s\n", termSafe(f.Key), termSafe(f.Reason))
		}
		for _, h := range j.Custody.HostIdentities {
			fmt.Fprintf(w, "  identity on this host: %s matches a recipient of the job\n", h.Path)
		}
		for _, p := range j.Problems {
			fmt.Fprintf(w, "  problem: %s\n", termSafe(p))
		}
	}
	verdict := "passed"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "drill %s: %d jobs in %s\n", verdict, len(r.Jobs), humanSeconds(r.DurationSeconds))
}

func humanSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// drillHistory prints the drills stored at the jobs' destinations, newest
// first: one line each, or one JSON array.
func drillHistory(ctx context.Context, specs []replicator.Job, opts drill.Options, asJSON bool, stdout io.Writer) error {
	type line struct {
		Started    time.Time `json:"started"`
		Job        string    `json:"job"`
		Passed     bool      `json:"passed"`
		RTOSeconds float64   `json:"rto_seconds_estimate"`
		RPOSeconds *float64  `json:"rpo_seconds"`
		Key        string    `json:"key"`
	}
	lines := []line{}
	for _, job := range specs {
		stored, err := drill.History(ctx, job, opts.Identities)
		if err != nil {
			return identityHint(err, strings.Join(opts.IdentityFiles, ""))
		}
		for _, s := range stored {
			j := s.Report.Jobs[0]
			lines = append(lines, line{s.Report.Started, j.Job, j.Passed, j.RTOSecondsEstimate, j.RPOSeconds, s.Key})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return b.Started.Compare(a.Started) })
	if asJSON {
		return json.NewEncoder(stdout).Encode(lines)
	}
	for _, l := range lines {
		verdict, rpo := "passed", "unknown"
		if !l.Passed {
			verdict = "FAILED"
		}
		if l.RPOSeconds != nil {
			rpo = humanSeconds(*l.RPOSeconds)
		}
		fmt.Fprintf(stdout, "%s  %s  %s  RTO %s  RPO %s\n", l.Started.UTC().Format(time.RFC3339), l.Job, verdict, humanSeconds(l.RTOSeconds), rpo)
	}
	return nil
}
