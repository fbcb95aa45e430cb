package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/voyageur-ca/voyageur/journal"
)

// Azure Event Grid on the webhook source. Event Grid delivers Blob Storage
// events in one of two schemas, chosen per subscription:
//
//   - the Event Grid schema: a JSON array of events with eventType,
//     eventTime, subject and data, posted with the header
//     "aeg-event-type: Notification". A new subscription is first
//     validated with a Microsoft.EventGrid.SubscriptionValidationEvent
//     (header "aeg-event-type: SubscriptionValidation") that must be
//     answered {"validationResponse": CODE};
//   - CloudEvents 1.0 (structured mode): one event object with specversion,
//     type, time, subject and data, or an array of them in batch mode. A new
//     subscription is first validated with an OPTIONS request carrying
//     WebHook-Request-Origin, answered with WebHook-Allowed-Origin.
//
// Both handshakes are answered without the bearer token: they change
// nothing (no event is recorded), and Event Grid may not send the
// subscription's delivery headers with them. Events themselves need the
// token like any POST (set it as a secret delivery property of the
// subscription: "Authorization: Bearer TOKEN").

// Event Grid event types voyageur follows.
const (
	egBlobCreated = "Microsoft.Storage.BlobCreated"
	egBlobDeleted = "Microsoft.Storage.BlobDeleted"
	// BlobRenamed comes from accounts with a hierarchical namespace (Data
	// Lake Storage): the old name is gone, the new one holds the data.
	egBlobRenamed = "Microsoft.Storage.BlobRenamed"
	egValidation  = "Microsoft.EventGrid.SubscriptionValidationEvent"
)

// egBlobSubject starts the subject of every Blob Storage event:
// /blobServices/default/containers/CONTAINER/blobs/NAME.
const egBlobSubject = "/blobServices/default/containers/"

// egMaxValidation bounds a validation request body: it holds one small
// event.
const egMaxValidation = 64 << 10

// eventGridEvent is one event in either schema: Event Grid's names, then
// CloudEvents' (encoding/json matches names case-insensitively, and the two
// schemas share none).
type eventGridEvent struct {
	EventType   string          `json:"eventType"`
	EventTime   string          `json:"eventTime"`
	Type        string          `json:"type"`
	Time        string          `json:"time"`
	SpecVersion string          `json:"specversion"`
	Subject     *string         `json:"subject"`
	Data        json.RawMessage `json:"data"`
}

// blobEventData is the data of a Blob Storage event.
type blobEventData struct {
	ContentLength  int64  `json:"contentLength"`
	Sequencer      string `json:"sequencer"`
	SourceURL      string `json:"sourceUrl"`
	ValidationCode string `json:"validationCode"`
}

// isEventGrid reports whether a webhook body is an Event Grid delivery:
// a JSON array (no S3 shape is one) or an object in the CloudEvents
// schema or with an Event Grid eventType.
func isEventGrid(body []byte) bool {
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) > 0 && body[0] == '[' {
		return true
	}
	var probe struct {
		SpecVersion *string `json:"specversion"`
		EventType   *string `json:"eventType"`
	}
	return json.Unmarshal(body, &probe) == nil && (probe.SpecVersion != nil || probe.EventType != nil)
}

// parseWebhookBody parses one webhook message: an Event Grid delivery or
// any shape ParseS3Events accepts.
func parseWebhookBody(body []byte) ([]Event, error) {
	if isEventGrid(body) {
		return ParseEventGridEvents(body)
	}
	return ParseS3Events(body)
}

// ParseEventGridEvents turns an Event Grid delivery, in the Event Grid
// schema or CloudEvents 1.0 (one event or a batch), into events.
//
// Microsoft.Storage.BlobCreated becomes journal.OpPut and BlobDeleted
// journal.OpDelete for the blob the subject names (Bucket is its
// container, Key its name, as the subject holds it); BlobRenamed becomes a
// delete of the old name (from data.sourceUrl) and a put of the new. Other
// event types, the validation event included, yield nothing. Events carry
// the size, sequencer and time; not the ETag: data.eTag is Azure's own
// ETag, while the azure backend reports a blob's MD5 where it has one, so
// every Event Grid hint is checked with a Stat of the source. A sequencer
// that is not hexadecimal is dropped (it then orders nothing).
//
// An event of a followed type that lacks its subject or holds a subject,
// URL, size or time that does not parse is an error naming the event and
// field (a poison message): no event of the body is returned then. Errors
// quote no blob name or body content.
func ParseEventGridEvents(body []byte) ([]Event, error) {
	var list []eventGridEvent
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		list = make([]eventGridEvent, 1)
		if err := json.Unmarshal(body, &list[0]); err != nil {
			return nil, fmt.Errorf("parse event grid events: %w", jsonError(err))
		}
	} else if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("parse event grid events: %w", jsonError(err))
	}
	var events []Event
	for i, ge := range list {
		evs, err := ge.events()
		if err != nil {
			return nil, fmt.Errorf("parse event grid events: event %d: %w", i, err)
		}
		events = append(events, evs...)
	}
	return events, nil
}

// jsonError describes a decoding error without quoting the body.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return fmt.Errorf("body is a json %s, not an event or an array of events", typeErr.Value)
		}
		return fmt.Errorf("field %s: want %s, got a json %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	return fmt.Errorf("body is not json: %w", err)
}

// events maps one Event Grid event.
func (ge *eventGridEvent) events() ([]Event, error) {
	typ, when := ge.EventType, ge.EventTime
	if ge.SpecVersion != "" {
		typ, when = ge.Type, ge.Time
	}
	var op journal.Op
	switch typ {
	case egBlobCreated, egBlobRenamed:
		op = journal.OpPut
	case egBlobDeleted:
		op = journal.OpDelete
	default:
		return nil, nil
	}
	if ge.Subject == nil {
		return nil, errors.New("no subject")
	}
	container, key, ok := blobSubject(*ge.Subject)
	if !ok {
		return nil, fmt.Errorf("subject is not %sCONTAINER/blobs/NAME", egBlobSubject)
	}
	var d blobEventData
	if len(ge.Data) > 0 {
		if err := json.Unmarshal(ge.Data, &d); err != nil {
			return nil, fmt.Errorf("data: %w", jsonError(err))
		}
	}
	seq := d.Sequencer
	if !isHex(seq) {
		seq = ""
	}
	size := d.ContentLength
	if op == journal.OpDelete {
		size = 0
	}
	e, err := newEvent(op, container, key, "", "", size, seq, when)
	if err != nil {
		return nil, err
	}
	if typ != egBlobRenamed {
		return []Event{e}, nil
	}
	oldContainer, oldKey, err := blobURL(d.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("data.sourceUrl: %w", err)
	}
	old, err := newEvent(journal.OpDelete, oldContainer, oldKey, "", "", 0, seq, when)
	if err != nil {
		return nil, err
	}
	return []Event{old, e}, nil
}

// blobSubject splits a Blob Storage event subject.
func blobSubject(s string) (container, key string, ok bool) {
	rest, ok := strings.CutPrefix(s, egBlobSubject)
	if !ok {
		return "", "", false
	}
	container, key, ok = strings.Cut(rest, "/blobs/")
	if !ok || container == "" || strings.Contains(container, "/") || key == "" {
		return "", "", false
	}
	return container, key, true
}

// blobURL splits a blob (or Data Lake) URL, https://ACCOUNT.HOST/CONTAINER/NAME,
// into its container and decoded name.
func blobURL(s string) (container, key string, err error) {
	if s == "" {
		return "", "", errors.New("missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", errors.New("not a url")
	}
	container, key, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || container == "" || key == "" {
		return "", "", errors.New("not a url of a blob")
	}
	return container, key, nil
}

// answerEventGridValidation answers a POST with the header
// "aeg-event-type: SubscriptionValidation": the body holds a
// SubscriptionValidationEvent whose code is echoed back. It reports whether
// r was one.
func answerEventGridValidation(rw http.ResponseWriter, r *http.Request, log *slog.Logger) bool {
	if !strings.EqualFold(r.Header.Get("aeg-event-type"), "SubscriptionValidation") {
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, egMaxValidation))
	if err != nil {
		http.Error(rw, "could not read the validation request", http.StatusBadRequest)
		return true
	}
	var list []eventGridEvent
	if err := json.Unmarshal(body, &list); err != nil {
		log.Warn("webhook refused a malformed event grid validation request", "remote", r.RemoteAddr, "err", jsonError(err))
		http.Error(rw, "malformed validation request", http.StatusBadRequest)
		return true
	}
	for _, ge := range list {
		if ge.EventType != egValidation {
			continue
		}
		var d blobEventData
		if json.Unmarshal(ge.Data, &d) != nil || d.ValidationCode == "" {
			break
		}
		reply, _ := json.Marshal(map[string]string{"validationResponse": d.ValidationCode})
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(reply)
		log.Info("webhook answered an event grid subscription validation", "remote", r.RemoteAddr)
		return true
	}
	log.Warn("webhook refused an event grid validation request without a validation code", "remote", r.RemoteAddr)
	http.Error(rw, "no SubscriptionValidationEvent with a validationCode", http.StatusBadRequest)
	return true
}

// answerWebhookOptions answers OPTIONS: the CloudEvents 1.0 abuse
// protection handshake Event Grid runs for a CloudEvents subscription
// grants the requesting origin, at any rate (the bearer token, not the
// origin, is what guards the webhook).
func answerWebhookOptions(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
	if origin := r.Header.Get("WebHook-Request-Origin"); origin != "" {
		rw.Header().Set("WebHook-Allowed-Origin", origin)
		rw.Header().Set("WebHook-Allowed-Rate", "*")
	}
	rw.WriteHeader(http.StatusOK)
}
