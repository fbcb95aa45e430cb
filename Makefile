# voyageur build and test entry points. `make test` installs what the tests
# need on a fresh Debian machine (pinned MinIO server, rclone and versitygw builds, awscli, age,
# zstd) and runs every unit and integration test against real servers.

SHELL       := /bin/bash
GO          ?= go
GOBIN       := $(shell $(GO) env GOPATH)/bin
MINIO_MOD   := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
MINIO       := $(GOBIN)/minio
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
RCLONE_MOD  := github.com/rclone/rclone@v1.76.0
RCLONE      := $(GOBIN)/rclone
VERSITYGW_MOD := github.com/versity/versitygw/cmd/versitygw@v1.8.0
VERSITYGW   := $(GOBIN)/versitygw

FAUXQS      := .cache/fauxqs/node_modules/.bin/fauxqs
AZURITE     := .cache/azurite/node_modules/.bin/azurite-blob
AZBLOB_JS   := .cache/azblob-js/node_modules/@azure/storage-blob

export VOYAGEUR_MINIO_BIN := $(MINIO)
export VOYAGEUR_FAUXQS_BIN := $(CURDIR)/$(FAUXQS)
export VOYAGEUR_AZURITE_BIN := $(CURDIR)/$(AZURITE)
export VOYAGEUR_AZBLOB_JS := $(CURDIR)/.cache/azblob-js
export VOYAGEUR_RCLONE_BIN := $(RCLONE)
export VOYAGEUR_VERSITYGW_BIN := $(VERSITYGW)

.PHONY: build test unit lint tools tools-apt tools-lint demo bench clean

# The version comes from git (a tag, else the commit), for voyageur version.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/voyageur ./cmd/voyageur

# The MinIO server is a pinned Go module build, cached in GOPATH/bin.
$(MINIO):
	@echo "installing MinIO server ($(MINIO_MOD)), about a minute..."
	$(GO) install $(MINIO_MOD)

# rclone, the yardstick of make bench and a client of voyageur serve in
# the tests, is a pinned Go module build too.
$(RCLONE):
	@echo "installing rclone ($(RCLONE_MOD)), about two minutes..."
	$(GO) install $(RCLONE_MOD)

# versitygw, an S3 gateway whose POSIX backend keeps objects as files
# (the folder marker tests), is a pinned Go module build too.
$(VERSITYGW):
	@echo "installing versitygw ($(VERSITYGW_MOD)), about three minutes..."
	$(GO) install $(VERSITYGW_MOD)

# Debian's awscli seeds and inspects buckets; age and zstd prove replicas
# are recoverable without voyageur; the demo shows bytes with xxd and
# computes a hashed name with openssl; the drill tests open the report page
# in Debian's headless chromium.
tools-apt:
	@missing=""; \
	[ -x /usr/bin/aws ] || missing="awscli"; \
	for t in age zstd xxd openssl chromium; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The SQS emulator (SQS JSON protocol) for the watch tests, from npm.
$(FAUXQS):
	npm install --no-audit --no-fund --prefix .cache/fauxqs fauxqs@1.9.2

# The Azure Blob Storage emulator, from npm: the 3.35 line is the last that
# runs on Node 20.
$(AZURITE):
	npm install --no-audit --no-fund --prefix .cache/azurite azurite@3.35.0

# The npm Azure Blob client, an outside client that reads what voyageur
# wrote into Azurite (integration/testdata/azblob-get.js); 12.32 is the last
# line that runs on Node 20.
$(AZBLOB_JS):
	npm install --no-audit --no-fund --prefix .cache/azblob-js @azure/storage-blob@12.32.0

# shellcheck lints scripts/; Debian's docker-compose validates
# docker-compose.yml (its `config` needs no container engine, and without
# --no-install-recommends apt would bring in a whole Docker daemon).
tools-lint:
	@missing=""; \
	for t in shellcheck docker-compose; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: $(MINIO) $(RCLONE) $(VERSITYGW) tools-apt $(FAUXQS) $(AZURITE) $(AZBLOB_JS) tools-lint

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	shellcheck scripts/*.sh

# The demo (scripts/demo.sh, narrated): two MinIO servers on loopback, an
# encrypted replica with hashed names, an outage, a restore from Canada with
# the offline identity, every SHA-256 checked. A minute or two once built.
demo: build $(MINIO) tools-apt
	VOYAGEUR_BIN=$(CURDIR)/bin/voyageur scripts/demo.sh

# Unit tests only: no servers needed.
unit:
	$(GO) test -count=1 -short ./...

# deploy/kubernetes/check is a module of its own (k8s.io/api stays out of
# voyageur's): ./... does not reach it.
test: tools lint
	$(GO) test -count=1 -timeout 25m ./...
	cd deploy/kubernetes/check && $(GO) vet ./... && $(GO) test -count=1 ./...

# Benchmarks (not part of make test): encryption throughput per core;
# watch's replication lag under 20 writes/s for 60 s; voyageur against the
# pinned rclone on two MinIO servers (median of 3, alternating), and the
# no-op scan over a million keys, and that scan as 1, 4 and 8 shards. The
# last three write their tables into docs/BENCHMARKS.md. About twenty
# minutes on 2 cores.
bench: tools $(RCLONE)
	set -o pipefail; $(GO) test -run '^$$' -bench Encode -cpu 1 -benchtime 10x ./crypto/ | tee bench-crypto.out
	set -o pipefail; $(GO) test -run '^$$' -bench WatchLag -benchtime 1x -timeout 10m ./integration/ | tee bench-watch.out
	set -o pipefail; VOYAGEUR_RCLONE_BIN=$(RCLONE) $(GO) test -v -run '^$$' -bench 'VsRclone|Scale|Serve|Shards' -benchtime 1x -timeout 45m ./bench/ | tee bench-rclone.out

clean:
	rm -rf bin
