package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// BenchmarkWatchLag measures replication lag under watch: 20 writes/s of
// mixed sizes for 60 s into an encrypted destination with hashed names,
// events through MinIO's webhook target. Lag is from the source event's
// time to the replica made durable, read back from watch's histogram
// (voyageur_replication_lag_seconds) and interpolated like Prometheus'
// histogram_quantile. Run by `make bench`.
func BenchmarkWatchLag(b *testing.B) {
	for range b.N {
		benchWatchLag(b, 20, 60*time.Second)
	}
}

func benchWatchLag(b *testing.B, perSecond int, span time.Duration) {
	hook := freeAddr(b)
	const token = "bench-token"
	src := webhookSource(b, hook, token, false)
	dstSrv := startServer(b)
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(b, false), kind: "minio"}
	dir := b.TempDir()
	k := newKeys(b, dir, false)
	cfg := writeConfig(b, dir, jobConfig{Src: src, Dst: dst, Concurrency: 16,
		ExtraJobLines: k.encryptionYAML("hashed", "zstd") + fmt.Sprintf("    events: [{webhook: %q, token: %q}]\n", hook, token)})
	w := startWatch(b, cfg)

	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20}
	weights := []int{30, 30, 20, 10, 8, 2} // mostly small, a few large
	pick := func() int {
		n := rng.IntN(100)
		for i, w := range weights {
			if n < w {
				return sizes[i]
			}
			n -= w
		}
		return sizes[0]
	}
	payload := randomData(8<<20, 9)
	c := src.client(b)
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	end := time.Now().Add(span)
	var written int
	var bytesWritten int64
	b.ResetTimer()
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		n := pick()
		go func(i, n int) {
			c.PutObject(context.Background(), src.bucket, fmt.Sprintf("ledgers/%05d.bin", i), bytes.NewReader(payload[:n]), int64(n), minio.PutObjectOptions{})
		}(i, n)
		written++
		bytesWritten += int64(n)
	}
	job := `{voyageur_job="ledgers"}`
	waitFor(b, 120*time.Second, "every write replicated", func() bool {
		return w.metric(b, "voyageur_objects_replicated_total"+job) >= float64(written)
	})
	b.StopTimer()
	buckets := histogram(b, w.metrics, "voyageur_replication_lag_seconds_bucket")
	p50, p99 := quantile(0.50, buckets), quantile(0.99, buckets)
	b.ReportMetric(p50, "p50-lag-s")
	b.ReportMetric(p99, "p99-lag-s")
	b.ReportMetric(float64(written), "objects")
	b.ReportMetric(float64(bytesWritten)/float64(1<<20), "MiB")
	w.stop(b)
}

type bucket struct {
	le    float64
	count float64
}

// histogram reads the cumulative buckets of one histogram from /metrics.
func histogram(t testing.TB, base, name string) []bucket {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\{voyageur_job="ledgers",le="([^"]+)"\} (\S+)$`)
	var out []bucket
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			le, _ := strconv.ParseFloat(m[1], 64)
			n, _ := strconv.ParseFloat(m[2], 64)
			out = append(out, bucket{le, n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out
}

// quantile interpolates linearly within the bucket holding q, as
// Prometheus' histogram_quantile does.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0
	}
	rank := q * bs[len(bs)-1].count
	prevLe, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if b.le > 1e300 { // +Inf
				return prevLe
			}
			return prevLe + (b.le-prevLe)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLe, prevCount = b.le, b.count
	}
	return prevLe
}
