package bench

import (
	"context"
	"net"
	"sync"
	"testing"

	"golang.org/x/time/rate"
)

// wan is a loopback TCP proxy in front of one server that carries at most
// bytesPerSecond in each direction, over all its connections together: a
// WAN link between the replicating host and the destination. It limits
// bytes on the wire, which is what a link does, so a tool that sends fewer
// bytes (compression) finishes sooner; a tool's own limit counts source
// bytes and would hide that.
type wan struct {
	ln       net.Listener
	target   string
	up, down *rate.Limiter
	wg       sync.WaitGroup
}

// startWAN listens on a free loopback port and forwards to target.
func startWAN(tb testing.TB, target string, bytesPerSecond int) *wan {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	const burst = 64 << 10
	w := &wan{
		ln: ln, target: target,
		up:   rate.NewLimiter(rate.Limit(bytesPerSecond), burst),
		down: rate.NewLimiter(rate.Limit(bytesPerSecond), burst),
	}
	w.wg.Go(w.serve)
	tb.Cleanup(func() {
		ln.Close()
		w.wg.Wait()
	})
	return w
}

// URL is the proxy's http://127.0.0.1:PORT.
func (w *wan) URL() string { return "http://" + w.ln.Addr().String() }

func (w *wan) serve() {
	var conns sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	for {
		client, err := w.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", w.target)
		if err != nil {
			client.Close()
			continue
		}
		mu.Lock()
		open[client], open[server] = true, true
		mu.Unlock()
		conns.Go(func() {
			var pipes sync.WaitGroup
			pipes.Go(func() { shape(server, client, w.up) })
			pipes.Go(func() { shape(client, server, w.down) })
			pipes.Wait()
			mu.Lock()
			delete(open, client)
			delete(open, server)
			mu.Unlock()
		})
	}
}

// shape copies src to dst at the limiter's pace, then closes both so the
// other direction ends too.
func shape(dst, src net.Conn, lim *rate.Limiter) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := lim.WaitN(context.Background(), n); werr != nil {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
