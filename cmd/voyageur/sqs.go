package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/replicator/events"
)

// sqsSource makes the event source of a job's `events: - sqs:` entry. Its
// client is built as the S3 clients are: the source endpoint's
// credentials, ca_file and timeouts (a private CA, a TLS-inspecting proxy
// sit in front of both).
// The long-poll wait is waitSeconds (0: SQS's longest, 20 s; tests wait
// less).
func sqsSource(ctx context.Context, ev EventConfig, src Endpoint, waitSeconds int32, log *slog.Logger) (*events.SQS, error) {
	client, err := newSQSClient(ctx, ev, src, events.SQSPollTime(waitSeconds), log)
	if err != nil {
		return nil, err
	}
	return &events.SQS{QueueURL: ev.SQS, Client: client, WaitSeconds: waitSeconds, Logger: log}, nil
}

// newSQSClient builds the SQS client of ev, whose receives take up to
// poll. Without region:, the region is the one the queue URL names.
// Errors never quote a credential.
func newSQSClient(ctx context.Context, ev EventConfig, src Endpoint, poll time.Duration, log *slog.Logger) (*sqs.Client, error) {
	u, err := backends.ParseURL(ev.SQS)
	if err != nil {
		return nil, errors.New("sqs: queue url: want http(s)://host/ACCOUNT/NAME")
	}
	if (src.AccessKey == "") != (src.SecretKey == "") {
		return nil, errors.New("sqs: access key and secret key must be set together")
	}
	var endpoint string
	if ev.URL != "" {
		e, err := backends.ParseEndpoint(ev.URL)
		if err != nil {
			return nil, errors.New("sqs: endpoint url: want http(s)://host[:port]")
		}
		endpoint = e.String()
	}
	// A long poll holds back the response headers, and every byte.
	timeouts := src.backendTimeouts()
	for _, d := range []*time.Duration{&timeouts.Response, &timeouts.Idle} {
		if *d != 0 && *d < poll {
			*d = poll
		}
	}
	tr, err := backends.NewTransport(src.CAFile, timeouts)
	if err != nil {
		return nil, fmt.Errorf("sqs: %w", err)
	}
	// As for S3: the client gets its HTTP client through its own options,
	// since handing a custom one to the config loader breaks
	// $AWS_CA_BUNDLE; the loader's own client serves the credential
	// providers.
	opts := []func(*config.LoadOptions) error{config.WithLogger(backends.SDKLogger(log))}
	if region := cmp.Or(ev.Region, queueRegion(u.Host)); region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if src.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(src.AccessKey, src.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqs: load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("sqs: no region: set one, or use a queue url that names it")
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
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
