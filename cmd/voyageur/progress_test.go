package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/replicator"
)

func TestProgressLine(t *testing.T) {
	p := &replicator.Counters{}
	p.ObjectsQueued.Store(10)
	p.ObjectsDone.Store(4)
	p.BytesQueued.Store(100 << 20)
	p.BytesDone.Store(25 << 20)
	got := progressLine("ledgers", p, 5*time.Second)
	want := "ledgers: 4/10 objects  25.0 MiB/100.0 MiB  5.0 MiB/s  ETA 15s"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
}

func TestNoProgressBarWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	stop := startProgressBar(&buf, "j", &replicator.Counters{}, false)
	time.Sleep(300 * time.Millisecond)
	stop()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	stop = startProgressBar(f, "j", &replicator.Counters{}, false)
	time.Sleep(300 * time.Millisecond)
	stop()
	if st, _ := f.Stat(); buf.Len() != 0 || st.Size() != 0 {
		t.Errorf("progress drawn on a non-terminal: %q, file of %d bytes", buf.String(), st.Size())
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestLogLineClearsProgressBar: a log line written while the bar shows
// starts on a cleared line, and the bar comes back after it.
func TestLogLineClearsProgressBar(t *testing.T) {
	var buf bytes.Buffer
	out := &termOut{w: &buf}
	out.setBar("ledgers: 1/2 objects")
	if _, err := out.Write([]byte("level=WARN msg=retrying\n")); err != nil {
		t.Fatal(err)
	}
	out.setBar("")
	if _, err := out.Write([]byte("level=INFO msg=done\n")); err != nil {
		t.Fatal(err)
	}
	want := "\r\033[Kledgers: 1/2 objects" + "\r\033[Klevel=WARN msg=retrying\nledgers: 1/2 objects" + "\r\033[K" + "level=INFO msg=done\n"
	if got := buf.String(); got != want {
		t.Errorf("terminal got %q\nwant %q", got, want)
	}
}
