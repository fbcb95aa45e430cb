package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/retry"
)

// SQSAPI is the part of the SQS API the SQS source calls; *sqs.Client
// implements it.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// SQS is an EventSource that long-polls an SQS queue receiving S3 event
// notifications (directly, through SNS, or from EventBridge: any shape
// ParseS3Events accepts).
//
// A message is deleted only after Intake returned nil for its events, so an
// event is never lost to a crash or an intake failure: its message comes
// back after the queue's visibility timeout. A message that yields no event
// (s3:TestEvent, ignored event types) is deleted at once. A malformed
// message (a poison message) is logged with its ID and size, never its
// body, and left for the queue's redrive policy to move to a dead-letter
// queue; gap is called the first time it is received, since its events are
// lost (an earlier first receipt is covered by the scan at watch start).
// Receive failures are retried with backoff, forever.
type SQS struct {
	// QueueURL is the queue, as SQS names it
	// (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME). It is passed as is.
	QueueURL string
	// Endpoint, when set, is where every request goes (such as
	// http://127.0.0.1:PORT for an emulator), whatever the host of
	// QueueURL.
	Endpoint string
	// Region defaults to the one QueueURL names, then to the AWS default
	// configuration's.
	Region string
	// AccessKey and SecretKey are static credentials; when empty, the AWS
	// default credential chain applies.
	AccessKey, SecretKey string
	// CAFile is a PEM bundle of extra trusted CAs, and Timeouts bound the
	// client's connections, as for the source endpoint's S3 client (a
	// private CA, a TLS-inspecting proxy). The response and idle timeouts
	// are raised to outlast a long poll.
	CAFile   string
	Timeouts backends.Timeouts
	// WaitSeconds is the long-poll wait, 1..20; 0 means 20.
	WaitSeconds int32
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Client replaces the client Run builds (tests); Endpoint, Region and
	// the credentials are then ignored.
	Client SQSAPI
}

var _ EventSource = (*SQS)(nil)

// SQS source limits.
const (
	sqsMaxMessages  = 10 // the most one ReceiveMessage returns
	sqsDefaultWait  = 20 // seconds, the longest long poll
	sqsDeleteTime   = 10 * time.Second
	sqsBackoffFirst = time.Second // the wait after one failure, doubling
	sqsBackoffMax   = time.Minute // with every consecutive one up to this
	// sqsPollMargin is how much longer than the long-poll wait the
	// response may take.
	sqsPollMargin = 10 * time.Second
)

// Name returns "sqs".
func (s *SQS) Name() string { return "sqs" }

// Run receives messages until ctx is done, then returns nil. It returns an
// error only for a bad configuration (queue URL, endpoint, credentials,
// region, wait, CA bundle), before receiving anything.
func (s *SQS) Run(ctx context.Context, intake Intake, gap func()) error {
	client, wait, err := s.setup(ctx)
	if err != nil {
		return err
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("queue", s.QueueURL)
	var failures int
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            &s.QueueURL,
			MaxNumberOfMessages: sqsMaxMessages,
			WaitTimeSeconds:     wait,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
			},
		})
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = s.handle(ctx, client, out.Messages, intake, gap, log)
			if ctx.Err() != nil {
				return nil
			}
		} else {
			err = fmt.Errorf("receive: %w", err)
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		d := retry.Backoff(sqsBackoffFirst, sqsBackoffMax, failures)
		log.Warn("sqs source failed, retrying", "in", d, "failures", failures, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// handle records the events of one batch of messages with a single intake
// call and deletes the messages that were parsed. It returns an error when
// intake failed, so that Run backs off.
func (s *SQS) handle(ctx context.Context, client SQSAPI, msgs []types.Message, intake Intake, gap func(), log *slog.Logger) error {
	var events []Event
	var done []types.DeleteMessageBatchRequestEntry
	for i, m := range msgs {
		body := aws.ToString(m.Body)
		evs, err := ParseS3Events([]byte(body))
		if err != nil {
			receives := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]
			log.Warn("sqs message is malformed, leaving it to the queue's redrive policy",
				"message_id", aws.ToString(m.MessageId), "bytes", len(body), "receive_count", receives, "err", err)
			if receives == "" || receives == "1" {
				gap()
			}
			continue
		}
		for j := range evs {
			evs[j].Source = "sqs"
		}
		events = append(events, evs...)
		done = append(done, types.DeleteMessageBatchRequestEntry{
			Id:            aws.String(strconv.Itoa(i)),
			ReceiptHandle: m.ReceiptHandle,
		})
	}
	if len(events) > 0 {
		if err := intake(ctx, events); err != nil {
			return fmt.Errorf("record %d events of %d messages (they come back after the visibility timeout): %w",
				len(events), len(done), err)
		}
	}
	if len(done) > 0 {
		s.delete(ctx, client, done, log)
	}
	return nil
}

// delete deletes recorded messages. It outlives ctx by a few seconds, so
// that a shutdown does not make recorded messages come back; a message it
// fails to delete comes back later, a harmless duplicate.
func (s *SQS) delete(ctx context.Context, client SQSAPI, entries []types.DeleteMessageBatchRequestEntry, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sqsDeleteTime)
	defer cancel()
	out, err := client.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: &s.QueueURL, Entries: entries})
	if err != nil {
		log.Warn("sqs could not delete recorded messages; they will be received again", "messages", len(entries), "err", err)
		return
	}
	for _, f := range out.Failed {
		log.Warn("sqs could not delete a recorded message; it will be received again",
			"code", aws.ToString(f.Code), "reason", aws.ToString(f.Message))
	}
}

// setup checks the configuration and returns the client and long-poll wait.
func (s *SQS) setup(ctx context.Context) (SQSAPI, int32, error) {
	u, err := backends.ParseURL(s.QueueURL)
	if err != nil {
		return nil, 0, errors.New("sqs: queue url: want http(s)://host/ACCOUNT/NAME")
	}
	wait := s.WaitSeconds
	if wait == 0 {
		wait = sqsDefaultWait
	}
	if wait < 0 || wait > sqsDefaultWait {
		return nil, 0, fmt.Errorf("sqs: wait of %d seconds: want 1 to 20", s.WaitSeconds)
	}
	if s.Client != nil {
		return s.Client, wait, nil
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		return nil, 0, errors.New("sqs: access key and secret key must be set together")
	}
	var endpoint string
	if s.Endpoint != "" {
		e, err := backends.ParseEndpoint(s.Endpoint)
		if err != nil {
			return nil, 0, errors.New("sqs: endpoint url: want http(s)://host[:port]")
		}
		endpoint = e.String()
	}

	// A long poll holds back the response headers, and every byte, for up
	// to wait seconds.
	timeouts := s.Timeouts
	poll := time.Duration(wait)*time.Second + sqsPollMargin
	for _, d := range []*time.Duration{&timeouts.Response, &timeouts.Idle} {
		if *d != 0 && *d < poll {
			*d = poll
		}
	}
	tr, err := backends.NewTransport(s.CAFile, timeouts)
	if err != nil {
		return nil, 0, fmt.Errorf("sqs: %w", err)
	}
	// As for S3: the client gets its HTTP client through its own options,
	// since handing a custom one to the config loader breaks
	// $AWS_CA_BUNDLE; the loader's own client serves the credential
	// providers.
	opts := []func(*config.LoadOptions) error{config.WithLogger(backends.SDKLogger(s.Logger))}
	if region := cmp.Or(s.Region, queueRegion(u.Host)); region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if s.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("sqs: load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, 0, errors.New("sqs: no region: set one, or use a queue url that names it")
	}
	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return client, wait, nil
}

// queueRegion returns the region a queue URL host names, "" when it names
// none: sqs.REGION.amazonaws.com (also the emulator's
// sqs.REGION.127.0.0.1), and the legacy REGION.queue.amazonaws.com and
// queue.amazonaws.com (us-east-1).
func queueRegion(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	labels := strings.Split(host, ".")
	switch {
	case len(labels) >= 4 && labels[0] == "sqs":
		return labels[1]
	case host == "queue.amazonaws.com":
		return "us-east-1"
	case len(labels) == 4 && strings.HasSuffix(host, ".queue.amazonaws.com"):
		return labels[0]
	}
	return ""
}
