package minio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7/pkg/notification"

	"github.com/voyageur-ca/voyageur/backends"
)

// ListenEvent is one object change reported by MinIO's bucket notification
// stream.
type ListenEvent struct {
	Key string // object key, as stored (not URL-encoded)
	// Removed is set for s3:ObjectRemoved:* events (a delete, a delete
	// marker); otherwise the event is one of s3:ObjectCreated:* (which on
	// MinIO also covers tagging, retention and legal hold changes).
	Removed   bool
	Size      int64  // object size; 0 for removals
	ETag      string // without quotes; "" for removals
	VersionID string // "" for an unversioned bucket
	Sequencer string // the server's ordering token for the key (hex)
	Time      time.Time
}

// listenEvents are the event names Listen subscribes to.
var listenEvents = []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}

// errStreamEnded reports that the server closed a notification stream
// cleanly (MinIO does so when it shuts down).
var errStreamEnded = errors.New("notification stream ended")

// settle is how long Listen waits after sending the subscription before it
// reports the stream as connected without an answer from the server.
const settle = time.Second

// Listen subscribes to the bucket's changes under prefix with one
// ListenBucketNotification stream (a MinIO extension; AWS S3 refuses it) and
// yields them as they come, oldest first.
//
// The stream is live: changes made while it is not connected are lost.
// connected, when not nil, is called once, from the goroutine ranging over
// the sequence and before the first event, when the stream is up: every
// change from then on is delivered. MinIO subscribes as soon as it reads
// the request but answers only with its first event or its first
// keep-alive, 10 seconds later; so Listen reports the stream connected at
// the first byte of the answer or one second (settle) after sending the
// request, whichever comes first. A refusal that comes later than that is
// still an error after connected.
//
// Some MinIO releases (those with minio/minio PR #21651, such as the
// server pinned for the tests) never flush the stream: events, and the
// answer itself, reach the client only when the server's 4 KiB connection
// buffer fills, and a quiet stream fails when the transport's response
// header timeout expires. Listen then delivers late (listenTransport keeps
// that to the next 4 KiB rather than 4 MiB), and the caller's reconnect
// and reconcile cover what is lost.
//
// The sequence never ends without an error: it yields one error and stops
// when the stream fails or ends, and ctx's error when ctx is done. The
// caller reconnects by ranging again. minio-go would reconnect on its own
// after a cleanly closed stream; Listen stops instead, so that the caller
// knows about the gap. A stream that goes silent (MinIO sends a keep-alive
// every 10 seconds) fails after the transport's read timeout.
//
// Before subscribing, Listen checks that the bucket exists, which also
// resolves its region; a missing bucket is an error.
func (b *Bucket) Listen(ctx context.Context, prefix string, connected func()) iter.Seq2[ListenEvent, error] {
	where := b.name + "/" + prefix
	return func(yield func(ListenEvent, error) bool) {
		// Cancelling stops minio-go's goroutine and its own reconnects.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()

		// Resolve the region now, so that the traced context below sees
		// only listen requests.
		ok, err := b.listen.BucketExists(ctx, b.bucket)
		if err != nil {
			yield(ListenEvent{}, mapError("listen", where, err))
			return
		}
		if !ok {
			yield(ListenEvent{}, fmt.Errorf("listen %s: bucket does not exist", where))
			return
		}

		wrote, up, ended := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var wroteOnce, upOnce, endOnce sync.Once
		var conns atomic.Int32
		trace := &httptrace.ClientTrace{
			// A second request is minio-go reconnecting: the first
			// stream is over.
			GetConn: func(string) {
				if conns.Add(1) > 1 {
					endOnce.Do(func() { close(ended) })
				}
			},
			WroteRequest: func(info httptrace.WroteRequestInfo) {
				if info.Err == nil {
					wroteOnce.Do(func() { close(wrote) })
				}
			},
			GotFirstResponseByte: func() { upOnce.Do(func() { close(up) }) },
		}
		infos := b.listen.ListenBucketNotification(httptrace.WithClientTrace(ctx, trace), b.bucket, prefix, "", listenEvents)

		isUp := false
		markUp := func() {
			if !isUp {
				isUp = true
				if connected != nil {
					connected()
				}
			}
		}
		var settled <-chan time.Time
		for {
			var info notification.Info
			select {
			case <-ctx.Done():
				yield(ListenEvent{}, fmt.Errorf("listen %s: %w", where, ctx.Err()))
				return
			case <-ended:
				yield(ListenEvent{}, fmt.Errorf("listen %s: %w", where, errStreamEnded))
				return
			case <-wrote:
				wrote = nil
				t := time.NewTimer(settle)
				defer t.Stop()
				settled = t.C
				continue
			case <-settled:
				markUp()
				continue
			case <-up:
				markUp()
				up = nil
				continue
			case info = <-infos:
			}
			if info.Err != nil {
				yield(ListenEvent{}, mapError("listen", where, info.Err))
				return
			}
			// Records travel on the answer: the stream is up.
			markUp()
			for _, rec := range info.Records {
				if !yield(listenEvent(rec), nil) {
					return
				}
			}
		}
	}
}

// listenEvent converts one notification record. Unlike the records MinIO
// sends to its notification targets (webhook, queues), which carry
// form-URL-encoded keys, the listen stream carries keys as they are, and
// minio-go passes them on: decoding them would turn "+" into a space.
func listenEvent(rec notification.Event) ListenEvent {
	obj := rec.S3.Object
	// A time MinIO did not send, or sent in another format, stays zero.
	t, _ := time.Parse(time.RFC3339Nano, rec.EventTime)
	return ListenEvent{
		Key:       obj.Key,
		Removed:   strings.HasPrefix(rec.EventName, "s3:ObjectRemoved:"),
		Size:      obj.Size,
		ETag:      backends.TrimETag(obj.ETag),
		VersionID: versionOf(obj.VersionID),
		Sequencer: obj.Sequencer,
		Time:      t,
	}
}

// listenTransport serves the listen stream. Its bodies hand out what has
// arrived, byte by byte: net/http's chunked reader, asked for more than
// it holds, keeps reading until the current chunk is complete, and
// minio-go asks for 4 MiB at a time. From a server that flushes, every
// chunk arrives whole and that costs nothing; from one that does not (see
// Listen), the stream arrives in 4 KiB blocks that end mid-chunk, and the
// events in a block would wait for the whole 4 MiB.
type listenTransport struct{ http.RoundTripper }

func (t listenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err == nil {
		resp.Body = byteBody{resp.Body}
	}
	return resp, err
}

// byteBody reads at most one byte per call, which the chunked reader
// returns without waiting for the rest of its chunk. Events are a few
// hundred bytes each; the cost of a call per byte does not show.
type byteBody struct{ io.ReadCloser }

func (b byteBody) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return b.ReadCloser.Read(p)
}
