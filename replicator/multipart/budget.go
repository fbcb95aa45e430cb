package multipart

import (
	"context"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// Limits is a run's memory budget, transfer slots and wire limit. It
// implements Budget for every object of the run.
//
// Memory is counted by buffer capacity, and buffers of the run's standard
// sizes (the classes: a part, a compressed part) are kept on a free list
// when freed, still counted, so that a long run reuses them instead of
// leaving the garbage collector megabytes to reclaim: what the budget
// counts is what the process holds.
type Limits struct {
	limit   int64
	classes []int64
	slots   *semaphore.Weighted
	wire    *rate.Limiter

	mu      sync.Mutex
	used    int64 // buffers handed out plus buffers on the free list
	free    map[int64][][]byte
	changed chan struct{} // closed and replaced whenever memory is freed
}

var _ Budget = (*Limits)(nil)

// NewLimits returns limits of memory bytes, slots concurrent requests and
// wire (nil: no bandwidth limit). classes are the buffer sizes worth
// keeping for reuse.
func NewLimits(memory int64, slots int, wire *rate.Limiter, classes ...int64) *Limits {
	return &Limits{
		limit: memory, classes: classes, slots: semaphore.NewWeighted(int64(slots)), wire: wire,
		free: map[int64][][]byte{}, changed: make(chan struct{}),
	}
}

// class is the capacity a buffer of n bytes gets: the smallest class that
// holds it, if n is more than half of it (a small object does not pay for
// clearing a whole part), else n itself.
func (l *Limits) class(n int64) int64 {
	best := n
	for _, c := range l.classes {
		if n <= c && n > c/2 && (best == n || c < best) {
			best = c
		}
	}
	return best
}

// Alloc implements Budget. A request larger than the whole budget is let
// through when nothing else is held, counted as the whole budget.
func (l *Limits) Alloc(ctx context.Context, sizes ...int64) ([][]byte, error) {
	for {
		l.mu.Lock()
		bufs, ok := l.take(sizes)
		wait := l.changed
		l.mu.Unlock()
		if ok {
			return bufs, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take hands out sizes from the free list and the room left, or nothing.
func (l *Limits) take(sizes []int64) ([][]byte, bool) {
	var cost int64
	reuse := map[int64]int{}
	for _, n := range sizes {
		c := l.class(n)
		if reuse[c] < len(l.free[c]) {
			reuse[c]++
			continue
		}
		cost += c
	}
	cost = min(cost, l.limit)
	if l.used+cost > l.limit {
		// Buffers of other sizes on the free list give their room.
		for c, list := range l.free {
			keep := reuse[c]
			for _, b := range list[keep:] {
				l.used -= int64(cap(b))
			}
			// Cleared, or the list's array would keep them from the
			// collector.
			clear(list[keep:])
			l.free[c] = list[:keep]
		}
		if l.used+cost > l.limit {
			return nil, false
		}
	}
	l.used += cost
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		c := l.class(n)
		if list := l.free[c]; reuse[c] > 0 && len(list) > 0 {
			bufs[i] = list[len(list)-1][:n]
			list[len(list)-1] = nil
			l.free[c] = list[:len(list)-1]
			reuse[c]--
			continue
		}
		bufs[i] = make([]byte, n, c)
	}
	return bufs, true
}

// Shrink implements Budget.
func (l *Limits) Shrink(b []byte) []byte {
	small := append([]byte(nil), b...)
	l.mu.Lock()
	l.used += int64(len(small))
	l.mu.Unlock()
	l.Free(b)
	return small
}

// Free implements Budget.
func (l *Limits) Free(b []byte) {
	if b == nil {
		return
	}
	c := int64(cap(b))
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.classes, c) {
		l.free[c] = append(l.free[c], b[:0])
	} else {
		l.used = max(l.used-c, 0)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Slot implements Budget.
func (l *Limits) Slot(ctx context.Context, n int64) (func(), error) {
	if l.wire != nil {
		for n > 0 {
			k := min(n, int64(l.wire.Burst()))
			if err := l.wire.WaitN(ctx, int(k)); err != nil {
				return nil, err
			}
			n -= k
		}
	}
	if err := l.slots.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { l.slots.Release(1) }, nil
}
