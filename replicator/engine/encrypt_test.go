package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/replicator"
)

func TestEncryptedSync(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, true)
	sizes := map[string]int{"empty": 0, "one": 1, "chunk": 64 << 10, "above": ps + 1, "multi": 3*ps + 777}
	for k, n := range sizes {
		testenv.Put(t, e.Src, "in/"+k, testenv.RandBytes(n, uint64(n)), backends.PutOptions{ContentType: "text/csv", Metadata: map[string]string{"owner": "treasury"}})
	}
	s := e.sync(t, Options{})
	if s.Copied != int64(len(sizes)) || s.Failed != 0 {
		t.Fatalf("summary %+v", s)
	}
	replicas := testenv.Keys(t, e.Dst, "")
	if len(replicas) != len(sizes) {
		t.Fatalf("replicas %v", replicas)
	}
	for k, n := range sizes {
		name := "out/" + crypto.HashedName(e.Job.Encryption.NameSecret, "in/"+k)
		data, meta := testenv.Decrypt(t, e.Dst, name, id)
		if !bytes.Equal(data, testenv.RandBytes(n, uint64(n))) {
			t.Errorf("%s: decrypted replica differs", k)
		}
		if meta.Key != "in/"+k || meta.ContentType != "text/csv" || meta.Metadata["owner"] != "treasury" || meta.Size != int64(n) {
			t.Errorf("%s: META %+v", k, meta)
		}
		// Beside the bytes, only the keyed fingerprint.
		_, info := testenv.Get(t, e.Dst, name)
		_, src := testenv.Get(t, e.Src, "in/"+k)
		fpKey, err := crypto.FingerprintKey(e.Job.Encryption.NameSecret)
		if err != nil {
			t.Fatal(err)
		}
		// The format names the one recipient (FORMAT.md §7).
		sum := sha256.Sum256([]byte(id.Recipient().String()))
		fp := crypto.Fingerprint(fpKey, "age;r="+hex.EncodeToString(sum[:]), "in/"+k, int64(n), src.ETag)
		if info.ContentType != "application/octet-stream" || len(info.Metadata) != 1 || info.Metadata[replicator.FingerprintMeta] != fp {
			t.Errorf("%s: the destination shows %q %v, want only the fingerprint %s", k, info.ContentType, info.Metadata, fp)
		}
	}
	if s := e.sync(t, Options{}); s.Copied != 0 {
		t.Errorf("second run copied %d", s.Copied)
	}
}

func TestEncryptedResumeSendsOnlyTheRest(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	e.Job.Transfer.Concurrency = 1
	data := testenv.RandBytes(6*ps+100, 9)
	testenv.Put(t, e.Src, "in/big", data, backends.PutOptions{})
	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 4}
	s, err := Sync(context.Background(), e.J, e.Job, Options{})
	if err != nil || s.Failed != 1 {
		t.Fatalf("interrupted run: %+v %v", s, err)
	}
	cp, ok, _ := e.J.Section("t").Checkpoint("in/big")
	if !ok || len(cp.Parts) != 3 || cp.Writer == nil {
		t.Fatalf("checkpoint: %v %+v after %+v", ok, cp.Parts, s)
	}
	var sent int64
	for _, p := range cp.Parts {
		sent += p.Size
	}
	e.Job.Dest = dst
	s = e.sync(t, Options{})
	_, info := testenv.Get(t, e.Dst, "out/big")
	if s.Copied != 1 || s.BytesWritten != info.Size-sent {
		t.Errorf("resume wrote %d bytes, want the %d not yet sent", s.BytesWritten, info.Size-sent)
	}
	if got, _ := testenv.Decrypt(t, e.Dst, "out/big", id); !bytes.Equal(got, data) {
		t.Fatal("resumed replica does not decrypt to the source")
	}
}

// A resumed upload keeps only the run of parts from part 1: a later part
// may have been sealed after a gap, and is sealed again identically.
func TestEncryptedResumeKeepsOnlyTheLeadingRun(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	e.Job.Transfer.Concurrency = 1
	data := testenv.RandBytes(5*ps, 3)
	testenv.Put(t, e.Src, "in/big", data, backends.PutOptions{})
	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 4}
	Sync(context.Background(), e.J, e.Job, Options{})
	jb := e.J.Section("t")
	cp, _, _ := jb.Checkpoint("in/big")
	// Forget part 2 in the checkpoint: parts 1 and 3 remain recorded.
	cp.Parts = append(cp.Parts[:1], cp.Parts[2:]...)
	if err := jb.SaveCheckpoint("in/big", cp); err != nil {
		t.Fatal(err)
	}
	e.Job.Dest = dst
	s := e.sync(t, Options{})
	if s.Copied != 1 || s.BytesWritten <= 3*ps {
		t.Errorf("resume wrote %d bytes; parts 2..5 should all be sent again", s.BytesWritten)
	}
	if got, _ := testenv.Decrypt(t, e.Dst, "out/big", id); !bytes.Equal(got, data) {
		t.Fatal("resumed replica does not decrypt to the source")
	}
}

// A checkpoint whose writer cannot be resumed restarts the object with a
// fresh file key rather than re-sealing under the old one.
func TestEncryptedResumeWithUnusableStateStartsOver(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	e.Job.Transfer.Concurrency = 1
	data := testenv.RandBytes(3*ps, 4)
	testenv.Put(t, e.Src, "in/big", data, backends.PutOptions{})
	dst := e.Job.Dest
	e.Job.Dest = &failingParts{Bucket: dst, from: 2}
	Sync(context.Background(), e.J, e.Job, Options{})
	jb := e.J.Section("t")
	cp, _, _ := jb.Checkpoint("in/big")
	cp.Writer = []byte(strings.Repeat("x", 10))
	if err := jb.SaveCheckpoint("in/big", cp); err != nil {
		t.Fatal(err)
	}
	e.Job.Dest = dst
	if s := e.sync(t, Options{}); s.Copied != 1 {
		t.Fatalf("summary %+v", s)
	}
	if got, _ := testenv.Decrypt(t, e.Dst, "out/big", id); !bytes.Equal(got, data) {
		t.Fatal("replica does not decrypt to the source")
	}
	for up, err := range e.Dst.ListMultipartUploads(context.Background(), "") {
		t.Errorf("upload left behind: %+v %v", up, err)
	}
}

// Turning encryption on for an existing job replaces its plain replicas.
func TestSwitchingToEncryptionReplicatesAgain(t *testing.T) {
	e := newEnv(t)
	testenv.Put(t, e.Src, "in/a", []byte("ledger"), backends.PutOptions{})
	e.sync(t, Options{})
	id := testenv.Encrypt(t, e.Env, false)
	if s := e.sync(t, Options{}); s.Copied != 1 {
		t.Fatalf("after enabling encryption: %+v, want the object copied again", s)
	}
	if got, _ := testenv.Decrypt(t, e.Dst, "out/a", id); string(got) != "ledger" {
		t.Fatalf("replica is %q", got)
	}
	if s := e.sync(t, Options{}); s.Copied != 0 {
		t.Errorf("third run copied %d", s.Copied)
	}
}

// Compressible data: a part gathers several compressed segments, so every
// part but the last reaches the store's 5 MiB minimum (the fs backend
// enforces it like S3), and the replica is much smaller than the source.
func TestEncryptedCompressiblePartsReachTheMinimum(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	var b strings.Builder
	for i := 0; b.Len() < 40<<20; i++ {
		fmt.Fprintf(&b, "2026-11-%02d,CA%08d,%d.%02d,CAD,Interac e-Transfer\n", 1+i%28, i%99991, i%5000, i%100)
	}
	data := []byte(b.String())
	testenv.Put(t, e.Src, "in/ledger.csv", data, backends.PutOptions{})
	s := e.sync(t, Options{})
	_, info := testenv.Get(t, e.Dst, "out/ledger.csv")
	if s.Copied != 1 || info.Size > int64(len(data))/3 {
		t.Fatalf("summary %+v, replica %d bytes of %d", s, info.Size, len(data))
	}
	if got, _ := testenv.Decrypt(t, e.Dst, "out/ledger.csv", id); !bytes.Equal(got, data) {
		t.Fatal("replica does not decrypt to the source")
	}
}

// Several encrypted multipart objects at once with the smallest budget
// that lets one through: admission keeps them from starving each other.
func TestEncryptedObjectsShareAScarceBudget(t *testing.T) {
	e := newEnv(t)
	id := testenv.Encrypt(t, e.Env, false)
	e.Job.Transfer.Memory = replicator.MinMemory(ps, ps, true)
	for i := range 4 {
		testenv.Put(t, e.Src, fmt.Sprintf("in/big%d", i), testenv.RandBytes(3*ps+i, uint64(i)), backends.PutOptions{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Sync(ctx, e.J, e.Job, Options{})
	if err != nil || s.Copied != 4 {
		t.Fatalf("sync: %+v %v", s, err)
	}
	for i := range 4 {
		if got, _ := testenv.Decrypt(t, e.Dst, fmt.Sprintf("out/big%d", i), id); !bytes.Equal(got, testenv.RandBytes(3*ps+i, uint64(i))) {
			t.Errorf("big%d differs", i)
		}
	}
}

// transfer.bandwidth paces the bytes sent to the destination, after
// compression: a ledger that compresses to a small fraction goes through
// the limit in about the time of its compressed size, not of its source
// size; read_bandwidth paces the source side instead.
func TestBandwidthIsOnTheWire(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 12<<20; i++ {
		fmt.Fprintf(&b, "2026-11-%02d,CA%08d,%d.%02d,CAD,Interac e-Transfer\n", 1+i%28, i%99991, i%5000, i%100)
	}
	data := []byte(b.String())
	const rate = 2 << 20
	for _, side := range []string{"wire", "read"} {
		t.Run(side, func(t *testing.T) {
			e := newEnv(t)
			testenv.Encrypt(t, e.Env, false)
			if side == "wire" {
				e.Job.Transfer.Bandwidth = rate
			} else {
				e.Job.Transfer.ReadBandwidth = rate
			}
			testenv.Put(t, e.Src, "in/ledger.csv", data, backends.PutOptions{})
			start := time.Now()
			s := e.sync(t, Options{})
			took := time.Since(start).Seconds()
			if s.Copied != 1 || s.BytesWritten > int64(len(data))/4 {
				t.Fatalf("summary %+v", s)
			}
			// The limiter's first burst (256 KiB) goes out at once.
			paced := float64(s.BytesWritten-256<<10) / rate
			srcTime := float64(len(data)) / rate
			t.Logf("%s limit: %d source bytes, %d sent, %.2f s (source at the limit: %.1f s)", side, len(data), s.BytesWritten, took, srcTime)
			if side == "wire" && (took < paced || took > srcTime/2) {
				t.Errorf("took %.2f s: the wire limit should take about %.2f s, far less than the %.1f s of the source bytes", took, paced, srcTime)
			}
			if side == "read" && took < srcTime*0.9 {
				t.Errorf("took %.2f s: reading %d bytes at %d B/s takes at least %.1f s", took, len(data), rate, srcTime*0.9)
			}
		})
	}
}
