package events

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/voyageur-ca/voyageur/integration/sqsserver"
	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/journal"
)

// runSource runs src until the returned stop is called (or the test ends)
// and checks that it then returns nil promptly.
func runSource(t *testing.T, src EventSource, intake Intake, gap func()) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, intake, gap) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s Run: %v", src.Name(), err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s Run did not return after ctx ended", src.Name())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// emulatorSource is an SQS source on the emulator. (The client the CLI
// builds is tested in cmd/voyageur.)
func emulatorSource(srv *sqsserver.Server, queueURL string, log *slog.Logger) *SQS {
	client := sqs.New(sqs.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test-access", "test-secret", ""),
	})
	return &SQS{QueueURL: queueURL, Client: client, Logger: log}
}

func TestSQSMessageShapes(t *testing.T) {
	srv := sqsserver.Start(t)
	q := srv.CreateQueue(t, "shapes")
	for _, body := range []string{awsPut, snsWrap(t, eventBridgeDeleted), eventBridgeCreated, testEvent, minioWebhook} {
		srv.Send(t, q, body)
	}

	fake := &fakeIntake{}
	runSource(t, emulatorSource(srv, q, nil), fake.intake, func() { t.Error("gap reported") })
	eventually(t, "4 events and an empty queue", func() bool {
		_, events := fake.snapshot()
		visible, inflight := srv.Counts(t, q)
		return len(events) == 4 && visible == 0 && inflight == 0
	})

	_, got := fake.snapshot()
	slices.SortFunc(got, func(a, b Event) int { return strings.Compare(a.Key, b.Key) })
	want := []Event{
		{Bucket: "photos", Key: "2026/a b+c.jpg", Op: journal.OpPut, VersionID: "5b6f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
			ETag: "9b2cf535f27731c974343645a3985328-4", Size: 20971520, Sequencer: "1830E4A6F0D3E3F1",
			Time: mustTime("2026-03-04T05:06:07.120Z")},
		wantAWSPut, // its key was form-encoded: "ledger+%28final%29.parquet"
		wantEventBridgeCreated,
		{Bucket: "fintech-ledgers", Key: "daily/日本語.txt", Op: journal.OpDelete, Sequencer: "617f0837b476e463",
			Time: mustTime("2026-03-04T05:06:10Z")},
	}
	for i := range want {
		want[i].Source = "sqs"
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got  %+v\n want %+v", got, want)
	}
}

func TestSQSDeletesOnlyAfterIntake(t *testing.T) {
	srv := sqsserver.Start(t)
	q := srv.CreateQueue(t, "redelivery")
	srv.SetAttributes(t, q, map[string]string{"VisibilityTimeout": "1"})
	srv.Send(t, q, minioDelete)

	// intake hands each batch to the test and returns what the test says.
	calls := make(chan []Event, 10)
	results := make(chan error)
	intake := func(ctx context.Context, events []Event) error {
		calls <- events
		select {
		case err := <-results:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	runSource(t, emulatorSource(srv, q, nil), intake, func() { t.Error("gap reported") })

	wantEvents := []Event{{Bucket: "photos", Key: "old.jpg", Op: journal.OpDelete, Sequencer: "1830E4A7A0D3E3F1",
		Time: mustTime("2026-03-04T05:06:09Z"), Source: "sqs"}}
	for i, result := range []error{errors.New("journal: disk full"), nil} {
		select {
		case events := <-calls:
			if !slices.Equal(events, wantEvents) {
				t.Errorf("intake call %d got %+v, want %+v", i+1, events, wantEvents)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no intake call %d", i+1)
		}
		// While intake runs, the message is in flight, not deleted.
		if visible, inflight := srv.Counts(t, q); visible != 0 || inflight != 1 {
			t.Errorf("during intake call %d: %d visible and %d in flight, want the message in flight", i+1, visible, inflight)
		}
		results <- result
	}
	eventually(t, "the message deleted after intake succeeded", func() bool {
		visible, inflight := srv.Counts(t, q)
		return visible == 0 && inflight == 0
	})
	// Deleted for good: it does not come back after the visibility timeout.
	select {
	case events := <-calls:
		t.Errorf("delivered again after a successful intake: %+v", events)
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestSQSPoisonMessage(t *testing.T) {
	srv := sqsserver.Start(t)
	q := srv.CreateQueue(t, "poison")
	srv.SetAttributes(t, q, map[string]string{"VisibilityTimeout": "1"})
	poison := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"confidential-bucket"}}}]}`
	poisonID := srv.Send(t, q, poison)
	srv.Send(t, q, awsPut)

	fake := &fakeIntake{}
	var gaps atomic.Int32
	logs := &testenv.LogBuffer{}
	runSource(t, emulatorSource(srv, q, slog.New(slog.NewTextHandler(logs, nil))), fake.intake, func() { gaps.Add(1) })

	eventually(t, "the poison message received twice", func() bool {
		return strings.Count(logs.String(), "message_id="+poisonID) >= 2
	})
	if _, events := fake.snapshot(); len(events) != 1 || events[0].Key != wantAWSPut.Key {
		t.Errorf("intake got %+v, want the good message's event", events)
	}
	if g := gaps.Load(); g != 1 {
		t.Errorf("%d gaps, want 1 (on the first receipt only)", g)
	}
	if visible, inflight := srv.Counts(t, q); visible+inflight != 1 {
		t.Errorf("queue holds %d visible and %d in flight messages, want the poison message only", visible, inflight)
	}
	out := logs.String()
	if !strings.Contains(out, "malformed") || !strings.Contains(out, "bytes="+strconv.Itoa(len(poison))) {
		t.Errorf("logs do not report the poison message and its size:\n%s", out)
	}
	if strings.Contains(out, "confidential-bucket") || strings.Contains(out, "test-secret") {
		t.Errorf("logs leak message content or credentials:\n%s", out)
	}
}

// fakeSQS fails its first receive, then returns msgs once, then waits.
type fakeSQS struct {
	msgs     []types.Message
	receives atomic.Int32
	input    atomic.Pointer[sqs.ReceiveMessageInput]
	deleted  chan []types.DeleteMessageBatchRequestEntry
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.input.Store(in)
	switch f.receives.Add(1) {
	case 1:
		return nil, errors.New("dial tcp: connection refused")
	case 2:
		return &sqs.ReceiveMessageOutput{Messages: f.msgs}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (f *fakeSQS) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.deleted <- in.Entries
	return &sqs.DeleteMessageBatchOutput{Failed: []types.BatchResultErrorEntry{
		{Id: in.Entries[0].Id, Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("expired")},
	}}, nil
}

func TestSQSRetriesAndBatches(t *testing.T) {
	fake := &fakeSQS{
		msgs: []types.Message{
			{MessageId: aws.String("m1"), ReceiptHandle: aws.String("h1"), Body: aws.String(awsPut)},
			{MessageId: aws.String("m2"), ReceiptHandle: aws.String("h2"), Body: aws.String("garbage"),
				Attributes: map[string]string{"ApproximateReceiveCount": "3"}},
			{MessageId: aws.String("m3"), ReceiptHandle: aws.String("h3"), Body: aws.String(testEvent)},
			{MessageId: aws.String("m4"), ReceiptHandle: aws.String("h4"), Body: aws.String(eventBridgeCreated)},
		},
		deleted: make(chan []types.DeleteMessageBatchRequestEntry, 1),
	}
	intake := &fakeIntake{}
	logs := &testenv.LogBuffer{}
	queue := "https://sqs.ca-central-1.amazonaws.com/111122223333/voyageur"
	src := &SQS{QueueURL: queue, Client: fake, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	stop := runSource(t, src, intake.intake, func() { t.Error("gap for a message received before") })

	var entries []types.DeleteMessageBatchRequestEntry
	select {
	case entries = <-fake.deleted:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing deleted after a failed receive")
	}
	var handles []string
	for _, e := range entries {
		handles = append(handles, aws.ToString(e.ReceiptHandle))
	}
	if want := []string{"h1", "h3", "h4"}; !slices.Equal(handles, want) {
		t.Errorf("deleted %v, want %v (the poison message stays)", handles, want)
	}
	// One intake call for the whole batch.
	if calls, events := intake.snapshot(); calls != 1 || len(events) != 2 || events[0].Key != wantAWSPut.Key || events[1].Key != wantEventBridgeCreated.Key {
		t.Errorf("%d intake calls with %+v, want one with 2 events", calls, events)
	}
	in := fake.input.Load()
	if aws.ToString(in.QueueUrl) != queue || in.MaxNumberOfMessages != 10 || in.WaitTimeSeconds != 20 {
		t.Errorf("receive input: queue %q, max %d, wait %d", aws.ToString(in.QueueUrl), in.MaxNumberOfMessages, in.WaitTimeSeconds)
	}
	stop()
	out := logs.String()
	for _, want := range []string{"connection refused", "message_id=m2", "ReceiptHandleIsInvalid"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

func TestSQSConfigErrors(t *testing.T) {
	queue := "https://sqs.ca-central-1.amazonaws.com/111122223333/voyageur"
	client := sqs.New(sqs.Options{Region: "ca-central-1"})
	for _, tc := range []struct {
		name string
		src  SQS
		want string
	}{
		{"no queue", SQS{Client: client}, "sqs: queue url: want"},
		{"queue not a url", SQS{QueueURL: "voyageur", Client: client}, "sqs: queue url: want"},
		{"queue with credentials", SQS{QueueURL: "https://AKIA:topsecret@sqs.ca-central-1.amazonaws.com/1/q", Client: client}, "sqs: queue url: want"},
		{"long wait", SQS{QueueURL: queue, WaitSeconds: 21, Client: client}, "sqs: wait of 21 seconds"},
		{"negative wait", SQS{QueueURL: queue, WaitSeconds: -1, Client: client}, "sqs: wait of -1 seconds"},
		{"no client", SQS{QueueURL: queue}, "sqs: no client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.src.Run(context.Background(), (&fakeIntake{}).intake, func() {})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}
