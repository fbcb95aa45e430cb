package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// eventFor is an AWS-format S3 event record of a put of key in bucket.
func eventFor(bucket, key string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-03T10:00:00Z",
"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"size":1,"sequencer":"01"}}}]}`,
		bucket, url.QueryEscape(key))
}

// statusFailed returns the keys status --json lists as failed (not
// retried) for the one job.
func statusFailed(t testing.TB, cfg string) []string {
	t.Helper()
	res := runVoyageur(t, "status", "-c", cfg, "--json")
	var st struct {
		Jobs []struct {
			Failed []struct{ Key, Error string } `json:"failed"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st.Jobs) != 1 {
		t.Fatalf("status --json: exit %d, %q (%v)", res.code, res.stdout, err)
	}
	var keys []string
	for _, f := range st.Jobs[0].Failed {
		keys = append(keys, f.Key)
	}
	return keys
}

// TestWebhookPermanentFailure: an event naming a key the source refuses
// for good (400) is not retried; status shows it as failed with the
// reason, replication goes on, and voyageur forget clears it. The webhook
// also takes the bearer scheme in lower case.
func TestWebhookPermanentFailure(t *testing.T) {
	hook := freeAddr(t)
	const token = "permanent-test-token"
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.csv"), 1000, 1)
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst,
		ExtraJobLines: fmt.Sprintf("    events: [{webhook: %q, token: %q}]\n    rescan: 1h\n", hook, token)})
	w := startWatch(t, cfg)
	waitWebhook(t, hook)

	post := func(key string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+hook, strings.NewReader(eventFor(src.bucket, key)))
		req.Header.Set("Authorization", "bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("post event of %s: status %d", key, resp.StatusCode)
		}
	}
	const bad = "in/../secret.txt"
	post(bad)
	srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "good.csv"), "s3://"+src.bucket+"/good.csv")
	post("good.csv")
	waitFor(t, 30*time.Second, "the good object at the destination", exists(t, dst, "good.csv"))
	// status answers from the running watch's snapshot (every 5 s).
	waitFor(t, 30*time.Second, "status to list the bad key as failed", func() bool {
		keys := statusFailed(t, cfg)
		return len(keys) == 1 && keys[0] == bad
	})
	w.stop(t)

	res := runVoyageur(t, "status", "-c", cfg)
	if res.code != 0 || !strings.Contains(res.stdout, "failed, not retried: "+bad+": ") || !strings.Contains(res.stdout, "400") ||
		!strings.Contains(res.stdout, "queued changes:     0") || !strings.Contains(res.stdout, "voyageur forget") {
		t.Errorf("status: exit %d, want the bad key failed with its reason and nothing queued\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runVoyageur(t, "forget", "-c", cfg, "--job", "ledgers", bad, "never-seen.txt")
	if res.code != 1 || res.stdout != "forgot "+bad+"\n" || !strings.Contains(res.stderr, "never-seen.txt: nothing recorded") {
		t.Errorf("forget: exit %d, stdout %q, stderr %q; want 1, the bad key forgotten, the unknown one named", res.code, res.stdout, res.stderr)
	}
	if keys := statusFailed(t, cfg); len(keys) != 0 {
		t.Errorf("status after forget lists %v as failed", keys)
	}
}

// waitWebhook waits until watch's webhook at hook answers: watch serves
// /healthz (what startWatch waits for) before its event sources listen.
func waitWebhook(t *testing.T, hook string) {
	t.Helper()
	waitFor(t, 20*time.Second, "the webhook to listen", func() bool {
		resp, err := http.Get("http://" + hook + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}
