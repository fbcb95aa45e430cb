package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/notification"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/integration/minioserver"
)

// watcher is a running `voyageur watch`.
type watcher struct {
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	metrics string // http://HOST:PORT
	done    chan error
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startWatch(t testing.TB, cfg string, args ...string) *watcher {
	t.Helper()
	addr := freeAddr(t)
	w := &watcher{stderr: &bytes.Buffer{}, metrics: "http://" + addr, done: make(chan error, 1)}
	w.cmd = exec.Command(voyageurBin, append([]string{"watch", "-c", cfg, "--metrics", addr}, args...)...)
	w.cmd.Stderr = w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			<-w.done
		}
		checkOutput(t, "watch", w.stderr.String())
		if t.Failed() {
			t.Logf("watch stderr:\n%s", w.stderr.String())
		}
	})
	waitFor(t, 20*time.Second, "watch to serve /healthz", func() bool {
		resp, err := http.Get(w.metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return w
}

// stop sends SIGTERM and wants exit 0 within 15 s.
func (w *watcher) stop(t testing.TB) {
	t.Helper()
	start := time.Now()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("watch exited with %v after SIGTERM", err)
		}
		t.Logf("watch stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not exit within 15 s of SIGTERM")
	}
}

func (w *watcher) kill(t testing.TB) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// metric returns the value of one sample of /metrics, or -1.
func (w *watcher) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get(w.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func exists(t testing.TB, s side, key string) func() bool {
	return func() bool {
		_, err := s.client(t).StatObject(context.Background(), s.bucket, key, minio.StatObjectOptions{})
		return err == nil
	}
}

// webhookSource starts a source MinIO whose webhook notification target
// posts S3 event records to hook, and subscribes a new bucket to it. With
// queued, MinIO keeps events in a queue directory while voyageur is down
// (its queue store delivers them about 1–2 s later than a direct post).
func webhookSource(t testing.TB, hook, token string, queued bool) side {
	t.Helper()
	env := []string{
		"MINIO_NOTIFY_WEBHOOK_ENABLE_VOY=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_VOY=http://" + hook + "/minio/events",
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_VOY=" + token,
	}
	if queued {
		env = append(env, "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_VOY="+t.TempDir())
	}
	srv := startServerWithEnv(t, env...)
	src := side{srv: srv, bucket: srv.CreateBucket(t, false), kind: "aws"}
	q := notification.NewConfig(notification.NewArn("minio", "sqs", "", "VOY", "webhook"))
	q.AddEvents(notification.ObjectCreatedAll, notification.ObjectRemovedAll)
	var cfg notification.Configuration
	cfg.AddQueue(q)
	// MinIO loads a new notification target in the background: under load
	// the ARN may be unknown for a moment.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := src.client(t).SetBucketNotification(context.Background(), src.bucket, cfg)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "destination ARN") || time.Now().After(deadline) {
			t.Fatalf("set bucket notification: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return src
}

// TestWatchWebhook: MinIO's webhook notification target posts S3 event
// records to voyageur's webhook; objects written with `aws s3 cp` appear at
// an encrypted destination within seconds, deletes follow, metrics count
// them, SIGTERM exits 0 promptly. Then lost events: the watcher is
// SIGKILLed, objects are written and deleted, and a restarted watcher
// converges.
func TestWatchWebhook(t *testing.T) {
	hook := freeAddr(t)
	const token = "webhook-test-token"
	src := webhookSource(t, hook, token, true)
	srcSrv, dstSrv := src.srv, startServer(t)
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	secret := readFile(t, k.nameSecret)
	name := func(key string) string { return "vault/" + crypto.HashedName(secret, key) }
	writeFile(t, filepath.Join(dir, "before.csv"), 1000, 1)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "before.csv"), "s3://"+src.bucket+"/ledgers/before.csv")
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "ledgers/", DstPrefix: "vault/", Deletes: "propagate", MaxDelete: "100",
		ExtraJobLines: k.encryptionYAML("hashed", "zstd") + fmt.Sprintf("    events: [{webhook: %q, token: %q}]\n    rescan: 1h\n", hook, token)})

	w := startWatch(t, cfg)
	waitFor(t, 20*time.Second, "the start-up reconcile", exists(t, dst, name("ledgers/before.csv")))

	writeFile(t, filepath.Join(dir, "live.csv"), 7*mib+3, 2)
	start := time.Now()
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "live.csv"), "s3://"+src.bucket+"/ledgers/live.csv")
	waitFor(t, 20*time.Second, "the new object at the destination", exists(t, dst, name("ledgers/live.csv")))
	t.Logf("replicated %s after aws s3 cp returned", time.Since(start).Round(time.Millisecond))
	obj, err := dst.client(t).GetObject(context.Background(), dst.bucket, name("ledgers/live.csv"), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := crypto.LoadIdentities(k.identity)
	var out bytes.Buffer
	if _, _, err := crypto.Decrypt(obj, &out, ids...); err != nil || !bytes.Equal(out.Bytes(), readFile(t, filepath.Join(dir, "live.csv"))) {
		t.Fatalf("replica of live.csv: %v", err)
	}
	// A key that S3 event records URL-encode.
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "before.csv"), "s3://"+src.bucket+"/ledgers/a b+c é.csv")
	waitFor(t, 20*time.Second, "an odd key", exists(t, dst, name("ledgers/a b+c é.csv")))
	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/ledgers/before.csv")
	waitFor(t, 20*time.Second, "the delete to follow", func() bool { return !exists(t, dst, name("ledgers/before.csv"))() })
	// Outside the prefix: ignored.
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "before.csv"), "s3://"+src.bucket+"/other/x.csv")

	job := `{voyageur_job="ledgers"}`
	if v := w.metric(t, "voyageur_objects_replicated_total"+job); v < 3 {
		t.Errorf("voyageur_objects_replicated_total = %v, want ≥ 3", v)
	}
	if v := w.metric(t, "voyageur_objects_deleted_total"+job); v != 1 {
		t.Errorf("voyageur_objects_deleted_total = %v, want 1", v)
	}
	if v := w.metric(t, "voyageur_replication_lag_seconds_count"+job); v < 2 {
		t.Errorf("voyageur_replication_lag_seconds_count = %v, want ≥ 2", v)
	}
	if v := w.metric(t, "voyageur_last_reconcile_timestamp_seconds"+job); v < float64(start.Add(-time.Minute).Unix()) {
		t.Errorf("voyageur_last_reconcile_timestamp_seconds = %v", v)
	}
	if v := w.metric(t, "voyageur_queue_depth"+job); v != 0 {
		t.Errorf("voyageur_queue_depth = %v, want 0", v)
	}
	w.stop(t)

	// Lost events: changes while the watcher is dead are found at restart.
	w = startWatch(t, cfg)
	w.kill(t)
	writeFile(t, filepath.Join(dir, "while-down.csv"), 3000, 3)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "while-down.csv"), "s3://"+src.bucket+"/ledgers/while-down.csv")
	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/ledgers/live.csv")
	w = startWatch(t, cfg)
	waitFor(t, 20*time.Second, "convergence after a restart", func() bool {
		return exists(t, dst, name("ledgers/while-down.csv"))() && !exists(t, dst, name("ledgers/live.csv"))()
	})
	if got := listObjects(t, dst, ""); len(got) != 2 {
		t.Errorf("destination holds %d objects, want 2: %v", len(got), sortedKeys(got))
	}
	w.stop(t)
}

func startServerWithEnv(t testing.TB, env ...string) *minioserver.Server {
	srv := minioserver.StartWithEnv(t, env...)
	addSecret(srv.SecretKey)
	return srv
}
