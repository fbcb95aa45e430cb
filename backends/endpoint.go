package backends

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Transport limits shared by the network backends. They favour many
// concurrent requests to one host (parallel part uploads and ranged reads).
const (
	idleConnTimeout = 90 * time.Second
	maxIdlePerHost  = 128
)

// Default timeouts, for the fields of Timeouts left zero.
const (
	DefaultConnectTimeout  = 10 * time.Second
	DefaultResponseTimeout = 2 * time.Minute
	DefaultIdleTimeout     = 2 * time.Minute
)

// Timeouts bound the waits of requests to one object store, so that a
// stalled server fails a request (with a network timeout error that
// IsRetryable accepts) instead of hanging it. A zero field takes its default.
type Timeouts struct {
	// Connect bounds dialing a connection plus its TLS handshake.
	Connect time.Duration
	// Response bounds the wait for the response headers once the request
	// is sent: a store that accepted a request and never answers.
	Response time.Duration
	// Idle fails a read or write on the connection that moves no byte for
	// this long: a body stalled mid-way, in either direction. A slow but
	// moving transfer is never cut.
	Idle time.Duration
}

// WithDefaults returns t with its zero fields set to the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.Response <= 0 {
		t.Response = DefaultResponseTimeout
	}
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	return t
}

// CABundleEnv names the environment variable holding an extra PEM bundle of
// trusted CAs, the one the AWS SDKs and CLI honour.
const CABundleEnv = "AWS_CA_BUNDLE"

// RootCAs returns the certificate pool a backend trusts: the system roots,
// plus the PEM bundle named by $AWS_CA_BUNDLE when it is set, plus caFile when
// it is not empty. A bundle that cannot be read or holds no certificate is an
// error naming its path.
func RootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, path := range []string{os.Getenv(CABundleEnv), caFile} {
		if path == "" {
			continue
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read ca bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca bundle %s: no pem certificate found", path)
		}
	}
	return pool, nil
}

// NewTransport returns an HTTP/1.1 transport for one object store, trusting
// RootCAs(caFile) and bounded by timeouts (see Timeouts). It keeps up to 128
// idle connections per host and honours the usual proxy variables.
func NewTransport(caFile string, timeouts Timeouts) (*http.Transport, error) {
	pool, err := RootCAs(caFile)
	if err != nil {
		return nil, err
	}
	t := timeouts.WithDefaults()
	dialer := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: conn, timeout: t.Idle}, nil
		},
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.Response,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          4 * maxIdlePerHost,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		// Object stores answer compressed bodies only when asked; asking
		// would make Go decompress transparently and break sizes and ranges.
		DisableCompression: true,
	}, nil
}

// idleConn fails a Read or Write that makes no progress for timeout, so that
// a server that stops talking mid-body cannot hang a transfer forever. The
// deadline rolls with every call: a slow but moving transfer survives.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
