package retry

import (
	"math/rand/v2"
	"time"
)

// Backoff is the one backoff of voyageur: the wait before retry n (n ≥ 1)
// after n consecutive failures is base doubled n-1 times, capped at max,
// less up to half of it at random, so within [d/2, d] for that d. The
// jitter spreads retries of many clients; the floor keeps a retry from
// following its failure at once. The storage wrapper, the event sources
// and watch's queue retries all use it. base must be positive.
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d - rand.N(d/2+1)
}
