GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-deps check bench clean

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

test: test-deps check
	$(GO) test -count=1 ./...

bench:
	./bench/run

clean:
	rm -f postern
