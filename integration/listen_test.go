package integration

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/voyageur-ca/voyageur/crypto"
)

// TestWatchListen: a job whose source is MinIO follows its
// ListenBucketNotification stream. Objects written with `aws s3 cp` appear
// at an encrypted destination and deletes follow, carried by events (the
// lag histogram counts only event-driven copies; the rescan interval is an
// hour).
//
// The pinned MinIO server does not flush its listen stream (see
// backends/minio.Listen): events leave it only when 4 KiB have gathered.
// While it waits, the test writes small filler objects under the job's
// prefix, each adding an event, as a busy bucket would; a server that
// flushes needs none.
func TestWatchListen(t *testing.T) {
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, true), kind: "minio"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	k := newKeys(t, dir, false)
	secret := readFile(t, k.nameSecret)
	name := func(key string) string { return "vault/" + crypto.HashedName(secret, key) }
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst, SrcPrefix: "ledgers/", DstPrefix: "vault/", Deletes: "propagate", MaxDelete: "100",
		ExtraJobLines: k.encryptionYAML("hashed", "zstd") + "    events: [{listen: true}]\n    rescan: 1h\n"})

	w := startWatch(t, cfg)
	job := `{voyageur_job="ledgers"}`
	waitFor(t, 20*time.Second, "the start-up reconcile", func() bool {
		return w.metric(t, "voyageur_last_reconcile_timestamp_seconds"+job) > 0
	})

	fillers := 0
	filler := func(i int) string { return fmt.Sprintf("ledgers/zz-filler-%03d", i) }
	push := func() {
		fillers++
		key := filler(fillers)
		if _, err := src.client(t).PutObject(context.Background(), src.bucket, key, strings.NewReader("f"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("gave up after 30s (%d fillers) waiting for %s", fillers, what)
			}
			push()
			time.Sleep(100 * time.Millisecond)
		}
	}

	live := []string{"ledgers/2026-11-24.csv", "ledgers/statements/acct 42+é.pdf", "ledgers/archive.bin"}
	sizes := []int{40_000, 1, 6*mib + 5}
	for i, key := range live {
		f := filepath.Join(dir, fmt.Sprintf("live-%d", i))
		writeFile(t, f, sizes[i], byte(10+i))
		srcSrv.AWS(t, "s3", "cp", "--only-show-errors", f, "s3://"+src.bucket+"/"+key)
	}
	start := time.Now()
	until("the new objects at the destination", func() bool {
		for _, key := range live {
			if !exists(t, dst, name(key))() {
				return false
			}
		}
		return true
	})
	t.Logf("%d objects replicated through the listen stream %s after the last aws s3 cp (%d fillers)", len(live), time.Since(start).Round(time.Millisecond), fillers)
	// The fillers written so far are replicated from events too: with
	// the live objects, the lag histogram must count every one of them.
	// (Waiting writes more fillers, to flush their events; those may or
	// may not be counted.)
	written := fillers
	until(fmt.Sprintf("the first %d fillers at the destination", written), func() bool {
		at := listObjects(t, dst, "")
		for i := 1; i <= written; i++ {
			if _, ok := at[name(filler(i))]; !ok {
				return false
			}
		}
		return true
	})
	for i, key := range live {
		if got, want := decryptReplica(t, dst, name(key), k), readFile(t, filepath.Join(dir, fmt.Sprintf("live-%d", i))); string(got) != string(want) {
			t.Errorf("replica of %s differs from the source", key)
		}
	}

	srcSrv.AWS(t, "s3", "rm", "--only-show-errors", "s3://"+src.bucket+"/"+live[0])
	until("the delete to follow", func() bool { return !exists(t, dst, name(live[0]))() })

	// The destination shows a copy or a delete just before its journal
	// commit, which the metrics follow.
	evented := written + len(live)
	waitFor(t, 10*time.Second, fmt.Sprintf("voyageur_replication_lag_seconds_count ≥ %d (%d fillers and %d live objects, each copied from an event)", evented, written, len(live)), func() bool {
		return w.metric(t, "voyageur_replication_lag_seconds_count"+job) >= float64(evented)
	})
	waitFor(t, 10*time.Second, "voyageur_objects_deleted_total ≥ 1", func() bool {
		return w.metric(t, "voyageur_objects_deleted_total"+job) >= 1
	})
	if v := w.metric(t, "voyageur_objects_deleted_total"+job); v != 1 {
		t.Errorf("voyageur_objects_deleted_total = %v, want 1", v)
	}
	w.stop(t)
}

// decryptReplica reads the replica at key on s and decrypts it with k's
// identity.
func decryptReplica(t testing.TB, s side, key string, k keys) []byte {
	t.Helper()
	obj, err := s.client(t).GetObject(context.Background(), s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	ids, err := crypto.LoadIdentities(k.identity)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, _, err := crypto.Decrypt(obj, &out, ids...); err != nil {
		t.Fatalf("decrypt %s: %v", key, err)
	}
	return out.Bytes()
}
