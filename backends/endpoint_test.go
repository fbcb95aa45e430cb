package backends

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestTransportStall checks that a server that stops talking, before the
// headers or in the middle of a body, fails the request with a retryable
// error instead of hanging it.
func TestTransportStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				if req.URL.Path == "/body" {
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
				}
				time.Sleep(5 * time.Second) // then stall
			}()
		}
	}()

	tr, err := NewTransport("", Timeouts{Response: 300 * time.Millisecond, Idle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, path := range []string{"/headers", "/body"} {
		start := time.Now()
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil || !IsRetryable(err) {
			t.Errorf("%s: %v, want a retryable timeout", path, err)
		} else {
			t.Logf("%s: %v", path, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: failed after %v, want about 300ms", path, d)
		}
	}
}

func TestRootCAs(t *testing.T) {
	t.Setenv(CABundleEnv, "")
	if _, err := RootCAs(""); err != nil {
		t.Errorf("system roots only: %v", err)
	}
	if _, err := RootCAs("endpoint_test.go"); err == nil {
		t.Error("a file without pem certificates was accepted")
	}
	t.Setenv(CABundleEnv, "/nonexistent/bundle.pem")
	if _, err := RootCAs(""); err == nil {
		t.Errorf("a missing $%s bundle was accepted", CABundleEnv)
	}
}
