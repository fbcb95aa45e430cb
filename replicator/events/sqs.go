package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	// Client sends the requests. The CLI builds it next to the S3 clients,
	// with the source endpoint's credentials, CA bundle and timeouts; its
	// response and idle timeouts must outlast SQSPollTime(WaitSeconds).
	Client SQSAPI
	// WaitSeconds is the long-poll wait, 1..20; 0 means 20.
	WaitSeconds int32
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

var _ EventSource = (*SQS)(nil)

// SQS source limits.
const (
	sqsMaxMessages  = 10 // the most one ReceiveMessage returns
	sqsDefaultWait  = 20 // seconds, the longest long poll
	sqsDeleteTime   = 10 * time.Second
	sqsBackoffFirst = time.Second // the wait after one failure, doubling
	sqsBackoffMax   = time.Minute // with every consecutive one up to this
)

// SQSPollTime is the longest a receive of Run may take with a long-poll
// wait of waitSeconds (0: the default): the wait, which holds back the
// response headers and every byte, and a margin.
func SQSPollTime(waitSeconds int32) time.Duration {
	if waitSeconds == 0 {
		waitSeconds = sqsDefaultWait
	}
	return time.Duration(waitSeconds)*time.Second + 10*time.Second
}

// Name returns "sqs".
func (s *SQS) Name() string { return "sqs" }

// Run receives messages until ctx is done, then returns nil. It returns an
// error only for a bad configuration (queue URL, wait, no client), before
// receiving anything.
func (s *SQS) Run(ctx context.Context, intake Intake, gap func()) error {
	wait, err := s.check()
	if err != nil {
		return err
	}
	client := s.Client
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

// check checks the configuration and returns the long-poll wait.
func (s *SQS) check() (int32, error) {
	if _, err := backends.ParseURL(s.QueueURL); err != nil {
		return 0, errors.New("sqs: queue url: want http(s)://host/ACCOUNT/NAME")
	}
	wait := s.WaitSeconds
	if wait == 0 {
		wait = sqsDefaultWait
	}
	if wait < 0 || wait > sqsDefaultWait {
		return 0, fmt.Errorf("sqs: wait of %d seconds: want 1 to 20", s.WaitSeconds)
	}
	if s.Client == nil {
		return 0, errors.New("sqs: no client")
	}
	return wait, nil
}
