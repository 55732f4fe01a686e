# sealgate: `make demo` runs it on its embedded default, `make test` checks it,
# `make install` installs it as a systemd service.
GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= /usr/lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
CONFDIR ?= /etc/sealgate
FUZZTIME ?= 10s
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/sealgate/sealgate/daemon.Version=$(VERSION) -X github.com/sealgate/sealgate/daemon.Commit=$(COMMIT)

.PHONY: all build demo test test-short fuzz generate generate-check install uninstall bench bench-quick clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sealgate ./cmd/sealgate

demo: build
	./bin/sealgate demo --dir .demo

# The whole suite. As root with SEALGATE_PRIVILEGED_TESTS=1 (as CI runs it),
# the eBPF, network-namespace and systemd tests run too and may not skip.
test: build
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./... >/dev/null
	$(GO) test -count=1 -timeout 40m ./...

test-short:
	$(GO) test -short ./...

# Each fuzz target for a bounded time (FUZZTIME). A failing target is run
# once more before the step fails: a real finding is saved under the
# package's testdata/fuzz and fails again at once; a fuzzing worker lost to
# a loaded machine does not.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; then \
	      tail -30 $$log; echo "fuzz $$f failed; running it once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1 || { cat $$log; exit 1; }; \
	    fi; \
	  done; \
	done

# Regenerate the eBPF objects and Go bindings (needs clang, llvm, libbpf-dev).
generate:
	$(GO) generate ./bpf/...

# CI: regeneration must leave no diff.
generate-check: generate
	git diff --exit-code -- bpf/

install: build
	install -D -m 0755 bin/sealgate $(DESTDIR)$(BINDIR)/sealgate
	sed 's|/usr/local/bin/sealgate|$(BINDIR)/sealgate|g' systemd/sealgate.service > bin/sealgate.service
	install -D -m 0644 bin/sealgate.service $(DESTDIR)$(UNITDIR)/sealgate.service
	install -D -m 0644 systemd/sysusers.d/sealgate.conf $(DESTDIR)$(SYSUSERSDIR)/sealgate.conf
	install -D -m 0644 systemd/tmpfiles.d/sealgate.conf $(DESTDIR)$(TMPFILESDIR)/sealgate.conf
	install -d -m 0750 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/sealgate.toml ]; then \
	  echo "keeping existing $(DESTDIR)$(CONFDIR)/sealgate.toml"; \
	else \
	  install -m 0640 systemd/sealgate.toml $(DESTDIR)$(CONFDIR)/sealgate.toml; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sealgate $(DESTDIR)$(UNITDIR)/sealgate.service \
	  $(DESTDIR)$(SYSUSERSDIR)/sealgate.conf $(DESTDIR)$(TMPFILESDIR)/sealgate.conf

bench:
	./bench/run.sh full

bench-quick:
	./bench/run.sh quick

clean:
	rm -rf bin .demo
