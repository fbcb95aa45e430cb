package drill

import (
	"fmt"
	"testing"

	"github.com/voyageur-ca/voyageur/crypto"
	"github.com/voyageur-ca/voyageur/replicator/recovery"
)

func replicas(sizes ...int64) []recovery.Replica {
	out := make([]recovery.Replica, len(sizes))
	for i, s := range sizes {
		out[i] = recovery.Replica{DestKey: fmt.Sprint(i), Meta: crypto.Meta{Key: fmt.Sprint(i), Size: s}}
	}
	return out
}

func total(rs []recovery.Replica) (n int64) {
	for _, r := range rs {
		n += r.Meta.Size
	}
	return n
}

// TestPick: the default takes 20 objects and keeps going until 64 MiB; the
// largest object up to 1 GiB is always in; a larger one is not forced in.
func TestPick(t *testing.T) {
	small := make([]int64, 100)
	for i := range small {
		small[i] = 1 << 20
	}
	got := pick(replicas(small...), Options{})
	if len(got) != 64 || total(got) != 64<<20 {
		t.Errorf("default on 100 x 1 MiB: %d objects, %d bytes; want 64, 64 MiB", len(got), total(got))
	}
	got = pick(replicas(10, 20, 30), Options{})
	if len(got) != 3 {
		t.Errorf("default on 3 objects: %d, want all 3", len(got))
	}
	got = pick(replicas(append(small[:50:50], 2<<30, 512<<20)...), Options{Sample: 3})
	if len(got) != 3 || got[0].Meta.Size != 512<<20 {
		t.Errorf("--sample 3: %d objects, first %d bytes; want 3 with the 512 MiB one first", len(got), got[0].Meta.Size)
	}
	got = pick(replicas(small...), Options{SampleBytes: 10 << 20})
	if total(got) != 10<<20 {
		t.Errorf("--sample-bytes 10MiB: %d bytes", total(got))
	}
}
