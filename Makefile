# sealgate: make demo (run it), make test (check it), make install (as a service).
GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/sealgate/sealgate/daemon.Version=$(VERSION) -X github.com/sealgate/sealgate/daemon.Commit=$(COMMIT)

.PHONY: all build demo test test-short generate install bench bench-quick fmt vet clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sealgate ./cmd/sealgate

demo: build
	./bin/sealgate demo --dir .demo

test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

test-short:
	$(GO) test -short ./...

clean:
	rm -rf bin .demo
