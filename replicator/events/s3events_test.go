package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// awsPut is an ObjectCreated:Put record as S3 sends it to SQS.
const awsPut = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"ca-central-1",
"eventTime":"2026-03-04T05:06:07.089Z","eventName":"ObjectCreated:Put",
"userIdentity":{"principalId":"AWS:AIDAEXAMPLE"},"requestParameters":{"sourceIPAddress":"203.0.113.9"},
"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
"s3":{"s3SchemaVersion":"1.0","configurationId":"voyageur",
"bucket":{"name":"fintech-ledgers","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::fintech-ledgers"},
"object":{"key":"daily/2026-03-04/ledger+%28final%29.parquet","size":1048576,"eTag":"d41d8cd98f00b204e9800998ecf8427e",
"versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}}]}`

// awsDeleteMarker is an ObjectRemoved:DeleteMarkerCreated record.
const awsDeleteMarker = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"ca-central-1",
"eventTime":"2026-03-04T05:06:08Z","eventName":"ObjectRemoved:DeleteMarkerCreated",
"s3":{"s3SchemaVersion":"1.0","bucket":{"name":"fintech-ledgers","arn":"arn:aws:s3:::fintech-ledgers"},
"object":{"key":"daily/caf%C3%A9+%E2%82%AC%2B1.csv","versionId":"null.marker.v2","sequencer":"0055AED6DCD90281F0"}}}]}`

// minioWebhook is what MinIO's webhook target posts: MinIO prefixes event
// names with "s3:", escapes "/" in keys and adds EventName and Key.
const minioWebhook = `{"EventName":"s3:ObjectCreated:CompleteMultipartUpload","Key":"photos/2026/a b+c.jpg",
"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-03-04T05:06:07.120Z",
"eventName":"s3:ObjectCreated:CompleteMultipartUpload","userIdentity":{"principalId":"minioadmin"},
"requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},
"responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8","x-amz-request-id":"1830E4A6F0D3E3F1","x-minio-deployment-id":"6c4f5d8c-2c0a-4b8e-9d1d-7f6a2b1c3d4e","x-minio-origin-endpoint":"http://127.0.0.1:9000"},
"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"photos","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::photos"},
"object":{"key":"2026%2Fa+b%2Bc.jpg","size":20971520,"eTag":"\"9b2cf535f27731c974343645a3985328-4\"","contentType":"image/jpeg","userMetadata":{"content-type":"image/jpeg"},"versionId":"5b6f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","sequencer":"1830E4A6F0D3E3F1"}},
"source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.90"}}]}`

// minioDelete is a MinIO s3:ObjectRemoved:Delete record on an unversioned
// bucket: no size, no ETag, no version.
const minioDelete = `{"EventName":"s3:ObjectRemoved:Delete","Key":"photos/old.jpg","Records":[{"eventVersion":"2.0",
"eventSource":"minio:s3","eventTime":"2026-03-04T05:06:09.000Z","eventName":"s3:ObjectRemoved:Delete",
"s3":{"bucket":{"name":"photos"},"object":{"key":"old.jpg","sequencer":"1830E4A7A0D3E3F1"}}}]}`

// eventBridgeCreated is an "Object Created" event as EventBridge delivers it
// to an SQS target; its key is not encoded.
const eventBridgeCreated = `{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
"source":"aws.s3","account":"111122223333","time":"2026-03-04T05:06:07Z","region":"ca-central-1",
"resources":["arn:aws:s3:::fintech-ledgers"],"detail":{"version":"0","bucket":{"name":"fintech-ledgers"},
"object":{"key":"daily/a b+c%41.csv","size":5,"etag":"b1946ac92492d2347c6235b4d2611184",
"version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"617f08299329d189"},
"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}`

// eventBridgeDeleted is an "Object Deleted" event for a delete marker.
const eventBridgeDeleted = `{"version":"0","id":"2ee9cc15-d022-99ea-1fb8-1b1bac4850f9","detail-type":"Object Deleted",
"source":"aws.s3","account":"111122223333","time":"2026-03-04T05:06:10Z","region":"ca-central-1",
"resources":["arn:aws:s3:::fintech-ledgers"],"detail":{"version":"0","bucket":{"name":"fintech-ledgers"},
"object":{"key":"daily/日本語.txt","sequencer":"617f0837b476e463"},"request-id":"0BH729840619AG5K",
"requester":"123456789012","source-ip-address":"1.2.3.4","reason":"DeleteObject","deletion-type":"Delete Marker Created"}}`

// testEvent is the message S3 sends when notifications are configured.
const testEvent = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-03-04T05:00:00.000Z",
"Bucket":"fintech-ledgers","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`

// snsWrap wraps a body in an SNS notification, as SNS delivers it to SQS
// without raw message delivery.
func snsWrap(t testing.TB, body string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{
		"Type":             "Notification",
		"MessageId":        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":         "arn:aws:sns:ca-central-1:111122223333:s3-events",
		"Subject":          "Amazon S3 Notification",
		"Message":          body,
		"Timestamp":        "2026-03-04T05:06:07.500Z",
		"SignatureVersion": "1",
		"Signature":        "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
		"SigningCertURL":   "https://sns.ca-central-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
		"UnsubscribeURL":   "https://sns.ca-central-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:ca-central-1:111122223333:s3-events:0000",
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	wantAWSPut = Event{Bucket: "fintech-ledgers", Key: "daily/2026-03-04/ledger (final).parquet", Op: journal.OpPut,
		VersionID: "096fKKXTRTtl3on89fVO.nfljtsv6qko", ETag: "d41d8cd98f00b204e9800998ecf8427e", Size: 1048576,
		Sequencer: "0055AED6DCD90281E5", Time: mustTime("2026-03-04T05:06:07.089Z")}
	wantEventBridgeCreated = Event{Bucket: "fintech-ledgers", Key: "daily/a b+c%41.csv", Op: journal.OpPut,
		VersionID: "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", ETag: "b1946ac92492d2347c6235b4d2611184", Size: 5,
		Sequencer: "617f08299329d189", Time: mustTime("2026-03-04T05:06:07Z")}
)

func TestParseS3Events(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Event
	}{
		{"aws put", awsPut, []Event{wantAWSPut}},
		{"aws delete marker, unicode and plus", awsDeleteMarker, []Event{{
			Bucket: "fintech-ledgers", Key: "daily/café €+1.csv", Op: journal.OpDelete, VersionID: "null.marker.v2",
			Sequencer: "0055AED6DCD90281F0", Time: mustTime("2026-03-04T05:06:08Z")}}},
		{"minio webhook multipart", minioWebhook, []Event{{
			Bucket: "photos", Key: "2026/a b+c.jpg", Op: journal.OpPut, VersionID: "5b6f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
			ETag: "9b2cf535f27731c974343645a3985328-4", Size: 20971520, Sequencer: "1830E4A6F0D3E3F1",
			Time: mustTime("2026-03-04T05:06:07.120Z")}}},
		{"minio delete", minioDelete, []Event{{Bucket: "photos", Key: "old.jpg", Op: journal.OpDelete,
			Sequencer: "1830E4A7A0D3E3F1", Time: mustTime("2026-03-04T05:06:09Z")}}},
		{"sns wrapped", snsWrap(t, awsPut), []Event{wantAWSPut}},
		{"sns wrapped eventbridge", snsWrap(t, eventBridgeCreated), []Event{wantEventBridgeCreated}},
		{"sns wrapped test event", snsWrap(t, testEvent), nil},
		{"eventbridge created, key not decoded", eventBridgeCreated, []Event{wantEventBridgeCreated}},
		{"eventbridge deleted", eventBridgeDeleted, []Event{{Bucket: "fintech-ledgers", Key: "daily/日本語.txt",
			Op: journal.OpDelete, Sequencer: "617f0837b476e463", Time: mustTime("2026-03-04T05:06:10Z")}}},
		{"eventbridge restore ignored", `{"detail-type":"Object Restore Completed","source":"aws.s3",
			"time":"2026-03-04T05:06:10Z","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`, nil},
		{"test event", testEvent, nil},
		{"empty records", `{"Records":[]}`, nil},
		{"ignored event names", `{"Records":[
			{"eventName":"ObjectRestore:Completed","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},
			{"eventName":"Replication:OperationFailedReplication","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},
			{"eventName":"s3:ObjectAccessed:Get","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},
			{"eventName":"ObjectTagging:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},
			{"eventName":"LifecycleTransition","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, nil},
		{"several records, ignored ones skipped", `{"Records":[
			{"eventName":"ObjectCreated:Copy","s3":{"bucket":{"name":"b"},"object":{"key":"x%2By+z","size":3}}},
			{"eventName":"ObjectAccessed:Head","s3":{"bucket":{"name":"b"},"object":{"key":"x"}}},
			{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"%F0%9F%A6%AB"}}}]}`,
			[]Event{{Bucket: "b", Key: "x+y z", Op: journal.OpPut, Size: 3}, {Bucket: "b", Key: "🦫", Op: journal.OpDelete}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseS3Events([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseS3Events: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseS3EventsErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, "body is not json"},
		{"garbage", `hello`, "body is not json"},
		{"truncated", awsPut[:100], "body is not json"},
		{"trailing data", `{"Records":[]} {}`, "body is not json"},
		{"array", `[{"Records":[]}]`, "body is a json array, not an object"},
		{"unknown object", `{"hello":"world"}`, "no Records, SNS Message, EventBridge detail-type or s3:TestEvent"},
		{"null records", `{"Records":null}`, "no Records"},
		{"records not a list", `{"Records":{"eventName":"ObjectCreated:Put"}}`, "field Records: want"},
		{"size as string", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"12"}}}]}`,
			"field Records.s3.object.size: want int64, got a json string"},
		{"no event name", `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, "record 0: no eventName"},
		{"no bucket", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`, "record 0: no s3.bucket.name"},
		{"no key", `{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"}}}]}`, "record 0: no s3.object.key"},
		{"empty key", `{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":""}}}]}`, "record 0: empty object key"},
		{"bad escape", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"100%"}}}]}`,
			"record 0: s3.object.key is not form-url-encoded"},
		{"bad time", `{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"yesterday","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
			`record 0: event time "yesterday" is not RFC 3339`},
		{"bad sequencer", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","sequencer":"zz"}}}]}`,
			"record 0: object sequencer is not hexadecimal"},
		{"negative size", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}`,
			"record 0: negative object size -1"},
		{"second record bad", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`,
			"record 1: no s3.bucket.name"},
		{"other event", `{"Event":"s3:Something"}`, `unknown Event "s3:Something" without Records`},
		{"sns confirmation", `{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe"}`,
			`sns message of type "SubscriptionConfirmation", not a Notification`},
		{"sns without message", `{"Type":"Notification"}`, "sns notification without Message"},
		{"sns with garbage", `{"Type":"Notification","Message":"not json"}`, "sns Message: body is not json"},
		{"sns in sns", snsWrap(t, snsWrap(t, awsPut)), "sns Message: sns notification wrapped in another sns notification"},
		{"eventbridge other source", `{"detail-type":"Object Created","source":"aws.ec2","detail":{}}`,
			`eventbridge event from source "aws.ec2", not aws.s3`},
		{"eventbridge no detail", `{"detail-type":"Object Created","source":"aws.s3"}`, "eventbridge event without detail"},
		{"eventbridge no bucket", `{"detail-type":"Object Deleted","detail":{"object":{"key":"k"}}}`, "no detail.bucket.name"},
		{"eventbridge no key", `{"detail-type":"Object Deleted","detail":{"bucket":{"name":"b"}}}`, "no detail.object.key"},
		{"eventbridge bad time", `{"detail-type":"Object Deleted","time":"12:00","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`,
			`eventbridge event: event time "12:00" is not RFC 3339`},
		{"long discriminator cut", `{"Event":"` + strings.Repeat("x", 500) + `"}`, `"` + strings.Repeat("x", 40) + `"...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseS3Events([]byte(tt.body))
			if err == nil {
				t.Fatalf("ParseS3Events = %+v, want an error containing %q", got, tt.want)
			}
			if got != nil {
				t.Errorf("events %+v returned with the error", got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "parse s3 events: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want it to start with %q and contain %q", msg, "parse s3 events: ", tt.want)
			}
		})
	}
}

// TestParseS3EventsQuotesNoKey checks that errors do not carry keys, which
// may be sensitive, even when the key is what is wrong.
func TestParseS3EventsQuotesNoKey(t *testing.T) {
	body := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"secret-name%zz"}}}]}`
	_, err := ParseS3Events([]byte(body))
	if err == nil || strings.Contains(err.Error(), "secret-name") {
		t.Fatalf("error %v, want one without the key", err)
	}
}

func FuzzParseS3Events(f *testing.F) {
	for _, seed := range []string{
		awsPut, awsDeleteMarker, minioWebhook, minioDelete, eventBridgeCreated, eventBridgeDeleted, testEvent,
		snsWrap(f, awsPut), snsWrap(f, eventBridgeDeleted), snsWrap(f, testEvent),
		`{"Records":[]}`, `{"Type":"Notification","Message":"{\"Records\":[{\"eventName\":\"ObjectRemoved:Delete\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"a%20b\"}}}]}"}`,
		``, `null`, `[]`, `{}`, `{"Records":null}`, `{"detail-type":"Object Created"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ParseS3Events(body)
		if err != nil {
			if events != nil {
				t.Fatalf("events %+v returned with error %v", events, err)
			}
			if !strings.HasPrefix(err.Error(), "parse s3 events: ") {
				t.Fatalf("error %q does not name the operation", err)
			}
			return
		}
		for _, e := range events {
			if e.Key == "" || e.Bucket == "" {
				t.Fatalf("event without key or bucket: %+v", e)
			}
			if e.Op != journal.OpPut && e.Op != journal.OpDelete {
				t.Fatalf("event with op %v: %+v", e.Op, e)
			}
			if e.Size < 0 || !isHex(e.Sequencer) || e.Source != "" {
				t.Fatalf("bad event %+v", e)
			}
		}
		again, err := ParseS3Events(body)
		if err != nil || !reflect.DeepEqual(events, again) {
			t.Fatalf("second parse differs: %+v, %v", again, err)
		}
	})
}
