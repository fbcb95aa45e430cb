package bench

import (
	"fmt"
	"os"
	"testing"
)

// TestMain also serves the three child roles the benchmarks start this
// binary in: the launcher that measures a tool (launchEnv), the floor
// client of workload S (floorEnv), and the no-op scan of BenchmarkScale
// (scaleChildEnv).
func TestMain(m *testing.M) {
	if path := os.Getenv(launchEnv); path != "" {
		os.Exit(launch(path, os.Args[1:]))
	}
	if spec := os.Getenv(floorEnv); spec != "" {
		if err := floorCopy(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if path := os.Getenv(scaleChildEnv); path != "" {
		if err := scaleChild(path, os.Getenv(scaleChildEnv+"_PREFIX")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
