package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/integration/sqsserver"
)

// s3Record is an S3 notification record as AWS sends it to SQS; keys are
// form-URL-encoded.
func s3Record(bucket, encodedKey string, size int) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
"eventTime":%q,"eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},
"object":{"key":%q,"size":%d,"sequencer":"0055AED6DCD90281E5"}}}]}`, time.Now().UTC().Format(time.RFC3339Nano), bucket, bucket, encodedKey, size)
}

// TestWatchSQS: S3 event messages on an SQS queue (the emulator speaks the
// SQS JSON protocol and emits nothing itself, so the test posts what AWS
// would: an S3 record with a URL-encoded key, the SNS-wrapped and the
// EventBridge shapes, and a TestEvent) are replicated, and every message
// is deleted once its change is durable.
func TestWatchSQS(t *testing.T) {
	sq := sqsserver.Start(t)
	queue := sq.CreateQueue(t, "voyageur-events")
	srcSrv, dstSrv := startServer(t), startServer(t)
	src := side{srv: srcSrv, bucket: srcSrv.CreateBucket(t, false), kind: "aws"}
	dst := side{srv: dstSrv, bucket: dstSrv.CreateBucket(t, false), kind: "minio"}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, jobConfig{Src: src, Dst: dst,
		ExtraJobLines: fmt.Sprintf("    events: [{sqs: %q, url: %q}]\n", queue, sq.URL)})
	w := startWatch(t, cfg)

	writeFile(t, filepath.Join(dir, "x.csv"), 2048, 7)
	for _, key := range []string{"in/a b+c.csv", "in/sns.csv", "in/eventbridge.csv"} {
		srcSrv.AWS(t, "s3", "cp", "--only-show-errors", filepath.Join(dir, "x.csv"), "s3://"+src.bucket+"/"+key)
	}
	sq.Send(t, queue, `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T12:00:00.000Z","Bucket":"`+src.bucket+`","RequestId":"1","HostId":"2"}`)
	sq.Send(t, queue, s3Record(src.bucket, "in/a+b%2Bc.csv", 2048))
	inner, _ := json.Marshal(s3Record(src.bucket, "in/sns.csv", 2048))
	sq.Send(t, queue, `{"Type":"Notification","MessageId":"m1","TopicArn":"arn:aws:sns:us-east-1:123456789012:s3-events","Message":`+string(inner)+`}`)
	sq.Send(t, queue, fmt.Sprintf(`{"version":"0","id":"e1","detail-type":"Object Created","source":"aws.s3","account":"123456789012",
"time":%q,"region":"us-east-1","resources":["arn:aws:s3:::%s"],"detail":{"version":"0","bucket":{"name":%q},
"object":{"key":"in/eventbridge.csv","size":2048,"sequencer":"0055AED6DCD90281E6"},"reason":"PutObject"}}`,
		time.Now().UTC().Format(time.RFC3339), src.bucket, src.bucket))

	for _, key := range []string{"in/a b+c.csv", "in/sns.csv", "in/eventbridge.csv"} {
		waitFor(t, 20*time.Second, key+" at the destination", exists(t, dst, key))
	}
	waitFor(t, 10*time.Second, "every message deleted", func() bool {
		visible, inflight := sq.Counts(t, queue)
		return visible == 0 && inflight == 0
	})
	if v := w.metric(t, `voyageur_objects_replicated_total{voyageur_job="ledgers"}`); v != 3 {
		t.Errorf("voyageur_objects_replicated_total = %v, want 3 (each object once)", v)
	}
	w.stop(t)
}
