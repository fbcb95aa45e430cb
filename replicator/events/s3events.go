package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/voyageur-ca/voyageur/journal"
)

// ParseS3Events turns one notification message body into events. It accepts
// the shapes S3 and MinIO deliver:
//
//   - the S3 notification document {"Records":[...]}, as S3 sends it to SQS,
//     SNS or Lambda and as MinIO's webhook target posts it (MinIO's extra
//     top-level EventName and Key are ignored, the records are the truth);
//     object keys in records are form-URL-encoded ("+" is a space) and are
//     decoded here;
//   - an SNS notification wrapping one of the other shapes as a string in
//     Message (one level of wrapping);
//   - an EventBridge event ("detail-type" and "detail") from source aws.s3,
//     whose object keys are not encoded;
//   - the s3:TestEvent S3 sends when notifications are configured, which
//     yields no event.
//
// ObjectCreated:* records and "Object Created" events become journal.OpPut;
// ObjectRemoved:* records (Delete, DeleteMarkerCreated) and "Object
// Deleted" events become journal.OpDelete; other event types (restores,
// replication, tagging, access) are ignored. Events carry their bucket,
// decoded key, version ID, ETag without quotes, size, sequencer and time;
// Source is left empty for the caller to set.
//
// A body that is not one of these shapes, or a record that lacks its bucket
// or key or holds a bad key encoding, time, size or sequencer, is an error
// naming the record and field (a poison message): no event of the body is
// returned then. Errors quote no key or body content.
func ParseS3Events(body []byte) ([]Event, error) {
	events, err := parseS3Message(body, true)
	if err != nil {
		return nil, fmt.Errorf("parse s3 events: %w", err)
	}
	return events, nil
}

// s3Message holds the top-level fields that tell the shapes apart.
type s3Message struct {
	Records *[]s3Record `json:"Records"`
	// SNS envelope.
	Type    string  `json:"Type"`
	Message *string `json:"Message"`
	// EventBridge event.
	DetailType *string        `json:"detail-type"`
	Source     string         `json:"source"`
	Time       string         `json:"time"`
	Detail     *eventBridgeS3 `json:"detail"`
	// s3:TestEvent.
	Event string `json:"Event"`
}

// s3Record is one record of an S3 notification document.
type s3Record struct {
	EventName string `json:"eventName"`
	EventTime string `json:"eventTime"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       *string `json:"key"`
			Size      int64   `json:"size"`
			ETag      string  `json:"eTag"`
			VersionID string  `json:"versionId"`
			Sequencer string  `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

// eventBridgeS3 is the detail of an S3 event delivered by EventBridge.
type eventBridgeS3 struct {
	Bucket struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key       *string `json:"key"`
		Size      int64   `json:"size"`
		ETag      string  `json:"etag"`
		VersionID string  `json:"version-id"`
		Sequencer string  `json:"sequencer"`
	} `json:"object"`
}

// testEventName is the Event of the message S3 sends when a notification
// configuration is created or changed.
const testEventName = "s3:TestEvent"

// parseS3Message parses one body; unwrapSNS allows one level of SNS
// envelope.
func parseS3Message(body []byte, unwrapSNS bool) ([]Event, error) {
	var m s3Message
	if err := json.Unmarshal(body, &m); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return nil, fmt.Errorf("body is a json %s, not an object", typeErr.Value)
		case typeErr != nil:
			return nil, fmt.Errorf("field %s: want %s, got a json %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return nil, fmt.Errorf("body is not json: %w", err)
	}
	switch {
	case m.Records != nil:
		return recordEvents(*m.Records)
	case m.Type != "":
		if m.Type != "Notification" {
			return nil, fmt.Errorf("sns message of type %s, not a Notification", brief(m.Type))
		}
		if m.Message == nil {
			return nil, errors.New("sns notification without Message")
		}
		if !unwrapSNS {
			return nil, errors.New("sns notification wrapped in another sns notification")
		}
		events, err := parseS3Message([]byte(*m.Message), false)
		if err != nil {
			return nil, fmt.Errorf("sns Message: %w", err)
		}
		return events, nil
	case m.DetailType != nil:
		return eventBridgeEvents(&m)
	case m.Event == testEventName:
		return nil, nil
	case m.Event != "":
		return nil, fmt.Errorf("unknown Event %s without Records", brief(m.Event))
	}
	return nil, errors.New("no Records, SNS Message, EventBridge detail-type or s3:TestEvent found")
}

// recordEvents turns S3 notification records into events.
func recordEvents(records []s3Record) ([]Event, error) {
	var events []Event
	for i, r := range records {
		if r.EventName == "" {
			return nil, fmt.Errorf("record %d: no eventName", i)
		}
		// MinIO names events "s3:ObjectCreated:Put", S3 "ObjectCreated:Put".
		op, ok := recordOp(strings.TrimPrefix(r.EventName, "s3:"))
		if !ok {
			continue
		}
		o := r.S3.Object
		if r.S3.Bucket.Name == "" {
			return nil, fmt.Errorf("record %d: no s3.bucket.name", i)
		}
		if o.Key == nil {
			return nil, fmt.Errorf("record %d: no s3.object.key", i)
		}
		key, err := url.QueryUnescape(*o.Key)
		if err != nil {
			return nil, fmt.Errorf("record %d: s3.object.key is not form-url-encoded: %w", i, err)
		}
		e, err := newEvent(op, r.S3.Bucket.Name, key, o.VersionID, o.ETag, o.Size, o.Sequencer, r.EventTime)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// recordOp maps an S3 event name without its "s3:" prefix to an operation;
// ok is false for the event types a replica does not follow.
func recordOp(name string) (op journal.Op, ok bool) {
	switch {
	case strings.HasPrefix(name, "ObjectCreated:"):
		return journal.OpPut, true
	case strings.HasPrefix(name, "ObjectRemoved:"):
		return journal.OpDelete, true
	}
	return 0, false
}

// eventBridgeSource is the source of the events S3 sends to EventBridge.
const eventBridgeSource = "aws.s3"

// eventBridgeEvents turns an EventBridge S3 event into zero or one event.
func eventBridgeEvents(m *s3Message) ([]Event, error) {
	if m.Source != "" && m.Source != eventBridgeSource {
		return nil, fmt.Errorf("eventbridge event from source %s, not %s", brief(m.Source), eventBridgeSource)
	}
	var op journal.Op
	switch *m.DetailType {
	case "Object Created":
		op = journal.OpPut
	case "Object Deleted":
		op = journal.OpDelete
	default:
		return nil, nil
	}
	d := m.Detail
	if d == nil {
		return nil, errors.New("eventbridge event without detail")
	}
	if d.Bucket.Name == "" {
		return nil, errors.New("eventbridge event: no detail.bucket.name")
	}
	if d.Object.Key == nil {
		return nil, errors.New("eventbridge event: no detail.object.key")
	}
	o := d.Object
	e, err := newEvent(op, d.Bucket.Name, *o.Key, o.VersionID, o.ETag, o.Size, o.Sequencer, m.Time)
	if err != nil {
		return nil, fmt.Errorf("eventbridge event: %w", err)
	}
	return []Event{e}, nil
}

// newEvent checks the fields common to both shapes and builds the event.
func newEvent(op journal.Op, bucket, key, versionID, etag string, size int64, sequencer, when string) (Event, error) {
	if key == "" {
		return Event{}, errors.New("empty object key")
	}
	if size < 0 {
		return Event{}, fmt.Errorf("negative object size %d", size)
	}
	if !isHex(sequencer) {
		return Event{}, errors.New("object sequencer is not hexadecimal")
	}
	var t time.Time
	if when != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, when); err != nil {
			return Event{}, fmt.Errorf("event time %s is not RFC 3339", brief(when))
		}
	}
	return Event{
		Bucket:    bucket,
		Key:       key,
		Op:        op,
		VersionID: versionID,
		ETag:      strings.Trim(etag, `"`),
		Size:      size,
		Sequencer: sequencer,
		Time:      t,
	}, nil
}

// isHex reports whether s holds only hexadecimal digits ("" included).
func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// brief quotes a discriminating field value for an error, cut to a few
// dozen bytes so that a hostile message cannot flood the logs.
func brief(s string) string {
	const limit = 40
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
