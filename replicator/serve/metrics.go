package serve

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are serve's Prometheus metrics, prefixed voyageur_serve_ and
// labelled voyageur_job as watch's are.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	served       prometheus.Counter
	failures     *prometheus.CounterVec
	fetchedBytes atomic.Int64
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_serve_requests_total", Help: "S3 requests answered, by operation and HTTP status.",
		}, []string{"operation", "status"}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voyageur_serve_bytes_served_total", Help: "Response body bytes sent to clients (object bytes and listings).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voyageur_serve_replica_failures_total", Help: "Objects not served because their replica could not be read or failed authentication.",
		}, []string{"voyageur_job"}),
	}
	m.reg.MustRegister(m.requests, m.served, m.failures,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "voyageur_serve_replica_bytes_fetched_total", Help: "Replica bytes read from the destinations to answer requests.",
		}, func() float64 { return float64(m.fetchedBytes.Load()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, name := range s.names {
		b := s.buckets[name]
		labels := prometheus.Labels{"voyageur_job": name}
		m.failures.With(labels)
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "voyageur_serve_catalog_objects", Help: "Objects in the job's loaded catalog (-1 before the first load).", ConstLabels: labels,
			}, func() float64 {
				if st := b.state.Load(); st != nil {
					return float64(st.objects)
				}
				return -1
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "voyageur_serve_catalog_age_seconds", Help: "Seconds since the job's catalog was last loaded (-1 before the first load).", ConstLabels: labels,
			}, func() float64 {
				if st := b.state.Load(); st != nil {
					return time.Since(st.loaded).Seconds()
				}
				return -1
			}))
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) request(op string, status int, bytes int64) {
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.served.Add(float64(bytes))
}
