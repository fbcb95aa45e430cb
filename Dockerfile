# voyageur container image: a static binary (no cgo, so no libc to match)
# on distroless/static, run as an unprivileged user. No shell in the image:
# nothing to exec into but voyageur itself.
#
#   docker build -t voyageur .
#   docker run --rm voyageur --help

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# voyageur version prints it: docker build --build-arg VERSION=$(git describe --tags --always) .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/voyageur ./cmd/voyageur \
 && /out/voyageur --help >/dev/null \
 && mkdir -p /out/journal

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/voyageur /usr/local/bin/voyageur
# The journal directory belongs to the runtime user, so a fresh named volume
# mounted here is writable (docker copies the owner on first use), and
# private (voyageur makes it 0700 anyway: it holds file keys of unfinished
# uploads).
COPY --from=build --chown=65532:65532 /out/journal /var/lib/voyageur
USER 65532:65532
VOLUME ["/var/lib/voyageur"]
# 9090: --metrics in docker-compose.yml; 8088: a webhook event source.
EXPOSE 9090 8088
ENTRYPOINT ["/usr/local/bin/voyageur"]
CMD ["--help"]
