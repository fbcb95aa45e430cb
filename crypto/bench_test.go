package crypto

import (
	"fmt"
	"testing"
)

// BenchmarkEncode measures compression + encryption of a 16 MiB object per
// core. Run with: go test -run '^$' -bench Encode -cpu 1 ./crypto/
func BenchmarkEncode(b *testing.B) {
	const size = 16 << 20
	inputs := []struct {
		name string
		data []byte
	}{{"random", randomData(size, 1)}, {"csv", csvData(size, 1)}}
	for _, in := range inputs {
		for _, c := range []Compression{{Zstd: true}, {Zstd: false}} {
			name := "none"
			if c.Zstd {
				name = "zstd3"
			}
			b.Run(fmt.Sprintf("%s/%s", in.name, name), func(b *testing.B) {
				w := newTestWriter(b, c, size)
				b.SetBytes(size)
				for b.Loop() {
					if _, err := w.Encode(in.data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
