package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/voyageur-ca/voyageur/replicator"
	"github.com/voyageur-ca/voyageur/replicator/serve"
)

// ServeConfig is the `serve:` section of the config.
type ServeConfig struct {
	Listen    string   `yaml:"listen"`
	AccessKey string   `yaml:"access_key"`
	SecretKey string   `yaml:"secret_key"`
	TLSCert   string   `yaml:"tls_cert"`
	TLSKey    string   `yaml:"tls_key"`
	Refresh   Duration `yaml:"refresh"`
	// Domain turns on virtual-host addressing: BUCKET.DOMAIN.
	Domain string `yaml:"domain"`
	// Cache is the catalog cache file (default: in the user cache
	// directory, one per config file).
	Cache string `yaml:"cache"`
}

// defaultServeListen is loopback: exposing the endpoint is a decision.
const defaultServeListen = "127.0.0.1:9300"

type serveOptions struct {
	config, identity, listen, asOf string
	jobs                           []string
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve -c FILE --identity FILE [--job NAME]... [--listen HOST:PORT] [--as-of RFC3339]",
		Short: "Serve the replicas as a read-only S3 endpoint, decrypted on the fly (failover)",
		Long: `serve answers S3 requests from the jobs' replicas: each job is one bucket named
after it, holding the original objects under their original keys (relative to
the job's source prefix), with their content types, user metadata and ETags.
Encrypted replicas are decrypted as they are read, a ranged GET fetching about
one part of the replica. Requests are signed (SigV4) with serve.access_key and
serve.secret_key; every write is refused. The catalog of each job is read from
its replicas at start (GET /healthz answers 200 once all are loaded) and again
every serve.refresh (default 1m). It needs neither the journal nor the source.

--as-of T serves, from versioned destinations, the state the replicas held at
T, as restore --as-of does.`,
		Example: `  voyageur serve -c voyageur.yaml --identity /media/offline/identity.txt
  voyageur serve -c voyageur.yaml --identity id.txt --job ledgers --listen 0.0.0.0:9300
  aws --endpoint-url http://127.0.0.1:9300 s3 cp s3://ledgers/daily/2026-11-24.parquet .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o, g, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "configuration file (required)")
	f.StringVar(&o.identity, "identity", "", "age identity file (needed for encrypted replicas)")
	f.StringArrayVar(&o.jobs, "job", nil, "serve this job (repeatable; default: every job)")
	f.StringVar(&o.listen, "listen", "", "HOST:PORT to listen on (default serve.listen, else "+defaultServeListen+")")
	f.StringVar(&o.asOf, "as-of", "", "serve the replicas as they were at this time (RFC 3339; versioned destinations)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runServe(ctx context.Context, o serveOptions, g *globals, stderr io.Writer) error {
	log := g.logger(stderr)
	cfg, err := LoadConfig(o.config, log)
	if err != nil {
		return err
	}
	sc := cfg.Serve
	if sc.AccessKey == "" || sc.SecretKey == "" {
		return configErrorf("config %s: serve.access_key and serve.secret_key are required: clients sign their requests with them (there is no anonymous access)", o.config)
	}
	if (sc.TLSCert == "") != (sc.TLSKey == "") {
		return configErrorf("config %s: serve.tls_cert and serve.tls_key go together", o.config)
	}
	var tlsCfg *tls.Config
	if sc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			return configErrorf("serve.tls_cert %s, serve.tls_key %s: %w", sc.TLSCert, sc.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	listen := o.listen
	if listen == "" {
		listen = sc.Listen
	}
	if listen == "" {
		listen = defaultServeListen
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return configErrorf("listen address %q: %w", listen, err)
	}
	copts, err := catalogOptions(o.identity, "", o.asOf)
	if err != nil {
		return err
	}
	selected := cfg.Jobs
	if len(o.jobs) > 0 {
		selected = nil
		for _, name := range o.jobs {
			jcs, err := selectJobs(cfg, name)
			if err != nil {
				return err
			}
			selected = append(selected, jcs...)
		}
	}
	var jobs []replicator.Job
	for _, jc := range selected {
		// Refused before any store is contacted: a client could not name it.
		if err := serve.ValidBucketName(jc.Name); err != nil {
			return configErrorf("job %s cannot be served: %w; rename the job", jc.Name, err)
		}
		job, err := buildJob(ctx, cfg, jc, log, false)
		if err != nil {
			return err
		}
		if job.Encryption != nil && len(copts.Identities) == 0 {
			return configErrorf("job %s is encrypted: --identity FILE is required", job.Name)
		}
		jobs = append(jobs, job)
	}
	cache := sc.Cache
	if cache == "" {
		cache = defaultServeCache(o.config)
	}
	srv, err := serve.New(jobs, serve.Options{
		Identities: copts.Identities, AsOf: copts.AsOf, AccessKey: sc.AccessKey, SecretKey: sc.SecretKey,
		Refresh: time.Duration(sc.Refresh), Domain: sc.Domain, CachePath: cache, Logger: log,
	})
	if err != nil {
		return &ConfigError{err}
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: time.Minute, IdleTimeout: 5 * time.Minute}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	log.Info("serving S3", "url", scheme+"://"+ln.Addr().String(), "buckets", strings.Join(names, ","))
	if tlsCfg == nil && !loopbackListen(listen) {
		log.Warn("serving plain http beyond loopback: objects travel unencrypted; set serve.tls_cert and serve.tls_key", "listen", listen)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	catalogs := make(chan struct{})
	go func() { srv.Run(runCtx); close(catalogs) }()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = hs.Shutdown(shut)
		cancel()
	}
	stop()
	<-catalogs
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// loopbackListen reports whether a listen address is loopback only.
func loopbackListen(listen string) bool {
	host, _, _ := net.SplitHostPort(listen)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultServeCache is the catalog cache of a config file: in the user
// cache directory, named after the file's absolute path so that two
// configs never share one. Without a cache directory: none.
func defaultServeCache(config string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	abs, err := filepath.Abs(config)
	if err != nil {
		abs = config
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(dir, "voyageur", "serve-"+hex.EncodeToString(sum[:8])+".db")
}
