package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/voyageur-ca/voyageur/backends"
	"github.com/voyageur-ca/voyageur/backends/azure"
	"github.com/voyageur-ca/voyageur/backends/fs"
	"github.com/voyageur-ca/voyageur/backends/minio"
	"github.com/voyageur-ca/voyageur/backends/retry"
	"github.com/voyageur-ca/voyageur/backends/s3"
)

// backendTimeouts is the endpoint's timeouts block for the backends.
func (ep Endpoint) backendTimeouts() backends.Timeouts {
	return backends.Timeouts{
		Connect: time.Duration(ep.Timeouts.Connect), Response: time.Duration(ep.Timeouts.Response), Idle: time.Duration(ep.Timeouts.Idle),
	}
}

// minioConfig is the minio-go configuration of the endpoint (type minio or
// ovh, whose url defaults to the region's preset) for one bucket.
func (ep Endpoint) minioConfig(bucket string) (minio.Config, error) {
	url := ep.URL
	if ep.Type == "ovh" && url == "" {
		var err error
		if url, err = minio.OVHEndpoint(ep.Region); err != nil {
			return minio.Config{}, err
		}
	}
	return minio.Config{
		Bucket: bucket, Region: ep.Region, URL: url,
		AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, CAFile: ep.CAFile, Timeouts: ep.backendTimeouts(),
	}, nil
}

// openBucket builds the Bucket a location names, wrapped in the one retry
// layer. It does not contact the store.
func openBucket(ctx context.Context, cfg *Config, loc Location, log *slog.Logger) (backends.Bucket, error) {
	ep := cfg.Endpoints[loc.Endpoint]
	timeouts := ep.backendTimeouts()
	var (
		b   backends.Bucket
		err error
	)
	switch ep.Type {
	case "aws", "s3":
		b, err = s3.New(ctx, s3.Config{
			Bucket: loc.Bucket, Region: ep.Region, URL: ep.URL, PathStyle: ep.PathStyle,
			AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, CAFile: ep.CAFile, Timeouts: timeouts, Logger: log,
		})
	case "minio", "ovh":
		mc, cerr := ep.minioConfig(loc.Bucket)
		if cerr != nil {
			return nil, &ConfigError{fmt.Errorf("endpoint %s: %w", loc.Endpoint, cerr)}
		}
		b, err = minio.New(mc)
	case "fs":
		b, err = fs.New(filepath.Join(ep.Path, loc.Bucket))
	case "azure":
		b, err = azure.New(azure.Config{
			Account: ep.Account, Key: ep.Key, SAS: ep.SAS, URL: ep.URL, Container: loc.Bucket,
			CAFile: ep.CAFile, Timeouts: timeouts,
		})
	default:
		err = fmt.Errorf("unknown endpoint type %q", ep.Type)
	}
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("endpoint %s bucket %s: %w", loc.Endpoint, loc.Bucket, err)}
	}
	// A try of a small call is bounded too (a trickling answer defeats the
	// transport's timeouts); it must not cut what the configured ones allow.
	attempt := max(retry.DefaultAttemptTimeout, timeouts.Response, timeouts.Idle)
	return retry.Wrap(b, retry.Policy{Logger: log, AttemptTimeout: attempt}), nil
}
