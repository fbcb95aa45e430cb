package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/voyageur-ca/voyageur/journal"
	"github.com/voyageur-ca/voyageur/replicator/engine"
)

// metrics are watch's Prometheus metrics, all prefixed voyageur_ and
// labelled voyageur_job (not "job", Prometheus' own target label). They
// implement engine.Observer.
type metrics struct {
	reg           *prometheus.Registry
	replicated    *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	deleted       *prometheus.CounterVec
	failures      *prometheus.CounterVec
	lag           *prometheus.HistogramVec
	lastReconcile *prometheus.GaugeVec
}

var _ engine.Observer = (*metrics)(nil)

func newMetrics(j *journal.Journal, jobs []string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		replicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_objects_replicated_total", Help: "Objects replicated (made durable at the destination).",
		}, []string{"voyageur_job"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_bytes_replicated_total", Help: "Source bytes of the objects replicated.",
		}, []string{"voyageur_job"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_objects_deleted_total", Help: "Replicas deleted after their source object was deleted.",
		}, []string{"voyageur_job"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_failures_total", Help: "Changes that failed (they stay queued and are retried).",
		}, []string{"voyageur_job"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "voyageur_replication_lag_seconds",
			Help:    "From the source event's time to the replica made durable.",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 900},
		}, []string{"voyageur_job"}),
		lastReconcile: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voyageur_last_reconcile_timestamp_seconds", Help: "When the last complete reconcile scan ended (Unix time).",
		}, []string{"voyageur_job"}),
	}
	m.reg.MustRegister(m.replicated, m.bytes, m.deleted, m.failures, m.lag, m.lastReconcile,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, job := range jobs {
		jb := j.Section(job)
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "voyageur_queue_depth", Help: "Changes waiting in the journal queue.", ConstLabels: prometheus.Labels{"voyageur_job": job},
		}, func() float64 {
			n, err := jb.QueueLen()
			if err != nil {
				return -1
			}
			return float64(n)
		}))
		// Series exist from the start, so that rates and alerts work.
		for _, v := range []*prometheus.CounterVec{m.replicated, m.bytes, m.deleted, m.failures} {
			v.WithLabelValues(job)
		}
	}
	return m
}

func (m *metrics) Replicated(job string, bytes int64, eventTime time.Time) {
	m.replicated.WithLabelValues(job).Inc()
	m.bytes.WithLabelValues(job).Add(float64(bytes))
	if !eventTime.IsZero() {
		m.lag.WithLabelValues(job).Observe(time.Since(eventTime).Seconds())
	}
}

func (m *metrics) Deleted(job string) { m.deleted.WithLabelValues(job).Inc() }
func (m *metrics) Failed(job string)  { m.failures.WithLabelValues(job).Inc() }
func (m *metrics) Reconciled(job string, at time.Time) {
	m.lastReconcile.WithLabelValues(job).Set(float64(at.Unix()))
}

// serve exposes /metrics and /healthz on addr until ctx is done.
func (m *metrics) serve(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("metrics listen beyond loopback: anyone who reaches the port can read them (job names, queue depth); give a loopback HOST:PORT such as 127.0.0.1:9464 unless a firewall guards it",
			"addr", ln.Addr().String())
	}
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}
