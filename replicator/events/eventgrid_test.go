package events

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/voyageur-ca/voyageur/internal/testenv"
	"github.com/voyageur-ca/voyageur/journal"
)

// Payloads as Azure documents them for Blob Storage events (the account,
// subscription and request IDs are made up).
const (
	egCreated = `[{
  "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fintechca",
  "subject": "/blobServices/default/containers/ledgers/blobs/2026/a b+c é.csv",
  "eventType": "Microsoft.Storage.BlobCreated",
  "eventTime": "2026-03-04T05:06:07.1234567Z",
  "id": "831e1650-001e-001b-66ab-eeb76e069631",
  "data": {"api": "PutBlockList", "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
    "requestId": "831e1650-001e-001b-66ab-eeb76e000000", "eTag": "0x8D4BCC2E4835CD0", "contentType": "text/csv",
    "contentLength": 524288, "blobType": "BlockBlob",
    "url": "https://fintechca.blob.core.windows.net/ledgers/2026/a%20b%2Bc%20%C3%A9.csv",
    "sequencer": "00000000000004420000000000028963", "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"}},
  "dataVersion": "", "metadataVersion": "1"
}, {
  "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fintechca",
  "subject": "/blobServices/default/containers/ledgers/blobs/2026/old.csv",
  "eventType": "Microsoft.Storage.BlobDeleted",
  "eventTime": "2026-03-04T05:06:08Z",
  "id": "831e1650-001e-001b-66ab-eeb76e069632",
  "data": {"api": "DeleteBlob", "requestId": "831e1650-001e-001b-66ab-eeb76e000001", "contentType": "text/csv",
    "blobType": "BlockBlob", "url": "https://fintechca.blob.core.windows.net/ledgers/2026/old.csv",
    "sequencer": "00000000000004420000000000028964"},
  "dataVersion": "", "metadataVersion": "1"
}, {
  "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fintechca",
  "subject": "/blobServices/default/containers/ledgers/blobs/2026/old.csv",
  "eventType": "Microsoft.Storage.BlobTierChanged",
  "eventTime": "2026-03-04T05:06:09Z", "id": "x", "data": {}, "dataVersion": "", "metadataVersion": "1"
}]`
	egCloudEvent = `{
  "source": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fintechca",
  "subject": "/blobServices/default/containers/ledgers/blobs/2026/b.csv",
  "type": "Microsoft.Storage.BlobCreated",
  "time": "2026-03-04T05:06:07Z",
  "id": "9aeb0fdf-c01e-0131-0922-9eb54906e209",
  "data": {"api": "PutBlob", "eTag": "0x8D9A5B2F1A7C3E0", "contentType": "text/csv", "contentLength": 12,
    "blobType": "BlockBlob", "url": "https://fintechca.blob.core.windows.net/ledgers/2026/b.csv",
    "sequencer": "0000000000000000000000000000661E000000000004f4b5"},
  "specversion": "1.0"
}`
	egRenamed = `[{"topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
  "subject": "/blobServices/default/containers/ledgers/blobs/2026/new name.csv",
  "eventType": "Microsoft.Storage.BlobRenamed", "eventTime": "2026-03-04T05:06:07Z", "id": "r",
  "data": {"api": "RenameFile", "sourceUrl": "https://lake.dfs.core.windows.net/ledgers/2026/old%20name.csv",
    "destinationUrl": "https://lake.dfs.core.windows.net/ledgers/2026/new%20name.csv", "sequencer": "0000000000000000000000000000661E0000000000050000"},
  "dataVersion": "", "metadataVersion": "1"}]`
	egValidationBody = `[{
  "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
  "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fintechca",
  "subject": "",
  "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
    "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/voyageur/validate?id=0000&t=2026-03-04T05:06:07Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},
  "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
  "eventTime": "2026-03-04T05:06:07Z", "metadataVersion": "1", "dataVersion": "1"
}]`
)

func TestParseEventGridEvents(t *testing.T) {
	got, err := ParseEventGridEvents([]byte(egCreated))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Bucket: "ledgers", Key: "2026/a b+c é.csv", Op: journal.OpPut, Size: 524288,
			Sequencer: "00000000000004420000000000028963", Time: mustTime("2026-03-04T05:06:07.1234567Z")},
		{Bucket: "ledgers", Key: "2026/old.csv", Op: journal.OpDelete,
			Sequencer: "00000000000004420000000000028964", Time: mustTime("2026-03-04T05:06:08Z")},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("event grid schema:\n got %+v\nwant %+v", got, want)
	}

	got, err = ParseEventGridEvents([]byte(egCloudEvent))
	wantCE := Event{Bucket: "ledgers", Key: "2026/b.csv", Op: journal.OpPut, Size: 12,
		Sequencer: "0000000000000000000000000000661E000000000004f4b5", Time: mustTime("2026-03-04T05:06:07Z")}
	if err != nil || len(got) != 1 || got[0] != wantCE {
		t.Errorf("cloudevents: %+v, %v; want [%+v]", got, err, wantCE)
	}
	// A CloudEvents batch is an array of the same objects.
	if got, err := ParseEventGridEvents([]byte("[" + egCloudEvent + "," + egCloudEvent + "]")); err != nil || len(got) != 2 || got[1] != wantCE {
		t.Errorf("cloudevents batch: %+v, %v", got, err)
	}

	got, err = ParseEventGridEvents([]byte(egRenamed))
	if err != nil || len(got) != 2 || got[0].Op != journal.OpDelete || got[0].Key != "2026/old name.csv" ||
		got[1].Op != journal.OpPut || got[1].Key != "2026/new name.csv" || got[1].Bucket != "ledgers" {
		t.Errorf("rename: %+v, %v; want a delete of the old name then a put of the new", got, err)
	}

	// The validation event in a notification records nothing.
	if got, err := ParseEventGridEvents([]byte(egValidationBody)); err != nil || len(got) != 0 {
		t.Errorf("validation event as a notification: %+v, %v", got, err)
	}
	// A sequencer that is not hex orders nothing but is no error.
	odd := strings.Replace(egCloudEvent, "0000000000000000000000000000661E000000000004f4b5", "not-hex", 1)
	if got, err := ParseEventGridEvents([]byte(odd)); err != nil || len(got) != 1 || got[0].Sequencer != "" {
		t.Errorf("non-hex sequencer: %+v, %v", got, err)
	}
}

func TestParseEventGridEventsRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"not json":          `[{"eventType":`,
		"a number":          `[1]`,
		"no subject":        `[{"eventType":"Microsoft.Storage.BlobCreated","eventTime":"2026-03-04T05:06:07Z","data":{}}]`,
		"not a blob":        `[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/queueServices/default/queues/q","data":{}}]`,
		"no blob name":      `[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/c/blobs/","data":{}}]`,
		"bad time":          `[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/c/blobs/secret-name","eventTime":"yesterday"}]`,
		"negative size":     `[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/c/blobs/secret-name","data":{"contentLength":-1}}]`,
		"size as a string":  `[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/c/blobs/secret-name","data":{"contentLength":"1"}}]`,
		"rename, no source": `[{"eventType":"Microsoft.Storage.BlobRenamed","subject":"/blobServices/default/containers/c/blobs/secret-name","data":{}}]`,
		"poison in a batch": strings.Replace(egCreated, `"contentLength": 524288`, `"contentLength": -5`, 1),
	} {
		got, err := ParseEventGridEvents([]byte(body))
		if err == nil {
			t.Errorf("%s: %+v, want an error", name, got)
			continue
		}
		if strings.Contains(err.Error(), "secret-name") || strings.Contains(err.Error(), "a b+c") {
			t.Errorf("%s: error quotes a blob name: %v", name, err)
		}
	}
}

func TestIsEventGrid(t *testing.T) {
	for body, want := range map[string]bool{
		egCreated: true, egCloudEvent: true, egValidationBody: true, " \n" + egRenamed: true,
		awsPut: false, minioWebhook: false, eventBridgeCreated: false, testEvent: false, "{not json": false,
	} {
		if got := isEventGrid([]byte(body)); got != want {
			t.Errorf("isEventGrid(%.40q) = %v, want %v", body, got, want)
		}
	}
}

// TestWebhookEventGrid: the webhook answers both Event Grid handshakes
// (without the token: they record nothing), takes Event Grid deliveries in
// both schemas with the token as it takes S3 records, and refuses them
// without it.
func TestWebhookEventGrid(t *testing.T) {
	fake := &fakeIntake{}
	logs := &testenv.LogBuffer{}
	srv := httptest.NewServer(&webhookHandler{token: webhookToken, intake: fake.intake, gap: func() {},
		log: slog.New(slog.NewTextHandler(logs, nil))})
	defer srv.Close()
	bearer := "Bearer " + webhookToken
	do := func(method, aeg, auth, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/eventgrid", strings.NewReader(body))
		if aeg != "" {
			req.Header.Set("aeg-event-type", aeg)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := do(http.MethodPost, "SubscriptionValidation", "", egValidationBody, nil)
	var answer map[string]string
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil ||
		answer["validationResponse"] != "512d38b6-c7b8-40c8-89fe-f46f9e9622b6" {
		t.Errorf("validation: %d %s, want 200 {\"validationResponse\": CODE}", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodPost, "SubscriptionValidation", "", `[{"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{}}]`, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("validation without a code: %d %s, want 400", resp.StatusCode, body)
	}
	resp, _ = do(http.MethodOptions, "", "", "", map[string]string{"WebHook-Request-Origin": "eventgrid.azure.net"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("WebHook-Allowed-Origin") != "eventgrid.azure.net" || !strings.Contains(resp.Header.Get("Allow"), "POST") {
		t.Errorf("cloudevents handshake: %d %v", resp.StatusCode, resp.Header)
	}
	if calls, _ := fake.snapshot(); calls != 0 {
		t.Errorf("the handshakes called intake %d times", calls)
	}

	if resp, _ := do(http.MethodPost, "Notification", "", egCreated, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("event grid notification without the token: %d, want 401", resp.StatusCode)
	}
	if resp, body := do(http.MethodPost, "Notification", bearer, egCreated, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("event grid notification: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodPost, "", bearer, egCloudEvent, map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}); resp.StatusCode != http.StatusOK {
		t.Errorf("cloudevent: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(http.MethodPost, "Notification", bearer, `[{"eventType":"Microsoft.Storage.BlobCreated","data":{}}]`, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("poison event grid message: %d, want 400", resp.StatusCode)
	}
	_, events := fake.snapshot()
	if len(events) != 3 || events[0].Key != "2026/a b+c é.csv" || events[1].Op != journal.OpDelete || events[2].Key != "2026/b.csv" || events[2].Source != "webhook" {
		t.Errorf("intake got %+v", events)
	}
	if out := logs.String(); strings.Contains(out, webhookToken) || strings.Contains(out, "512d38b6") || strings.Contains(out, "ledgers") {
		t.Errorf("logs leak the token, the validation code or message content:\n%s", out)
	}
}
