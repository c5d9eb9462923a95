GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-deps check bench fuzz clean

# One static binary, pure Go.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o postern ./cmd/postern

test-deps:
	./scripts/install-test-deps.sh

# Formatting, vet, the Windows build, then every test (unit, store crash,
# end-to-end with smtplib and swaks).
check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/postern
	cd third_party/go-smtp && $(GO) vet ./...
	cd third_party/go-imap && $(GO) vet ./...

# third_party/go-smtp and go-imap are modules of their own (patched copies,
# see their POSTERN-PATCHES.md): ./... does not reach their tests.
test: test-deps check
	$(GO) test -count=1 ./...
	cd third_party/go-smtp && $(GO) test -count=1 ./...
	cd third_party/go-imap && $(GO) test -count=1 ./...

bench:
	./bench/run

# Fuzzing: each target in turn for FUZZTIME (new crashers land in the
# package's testdata/fuzz/<Target>/; commit them as regression seeds).
# FUZZTARGETS lists module-dir:package:target; pick some with e.g.
#   make fuzz FUZZTIME=30s FUZZTARGETS=.:./internal/imapd:FuzzIMAPSession
# FUZZFLAGS passes more, e.g. FUZZFLAGS=-parallel=1 for one worker. New
# inputs are not minimized: the session targets' coverage varies from run
# to run (goroutines), so minimizing took most of the time (1 exec/s
# instead of hundreds).
# FuzzParsePath runs from third_party/go-smtp: fuzzing needs the main module.
FUZZTIME ?= 5m
FUZZFLAGS ?= -fuzzminimizetime=0
FUZZTARGETS ?= \
	.:./internal/smtpd:FuzzSMTPSession \
	.:./internal/imapd:FuzzIMAPSession \
	.:./internal/pop3d:FuzzSession \
	third_party/go-smtp:.:FuzzParsePath \
	.:./internal/store/sqlite:FuzzNormalizeAddress \
	.:./internal/smtpd:FuzzARFilter
fuzz:
	@set -e; for t in $(FUZZTARGETS); do \
		dir=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; name=$${rest#*:}; \
		echo "== $$name ($$dir $$pkg, $(FUZZTIME))"; \
		(cd $$dir && $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS)); \
	done

clean:
	rm -f postern
