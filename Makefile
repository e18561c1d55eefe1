# authzd's build, test and tooling entry points. `make` alone lists them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
OPA := $(TOOLS_BIN)/opa
BUF := $(TOOLS_BIN)/buf
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## build the pinned tools (buf, protoc plugins, opa, grpcurl) into .tools/bin
	@mkdir -p $(TOOLS_BIN)
	cd tools && GOBIN=$(TOOLS_BIN) $(GO) install tool
	cd tools/buf && GOBIN=$(TOOLS_BIN) $(GO) install tool

$(BUF) $(OPA):
	$(MAKE) tools

.PHONY: gen
gen: $(BUF) ## regenerate gen/ from proto/ with the local plugins
	rm -rf gen/authz gen/openapi/*.json
	$(BUF) format -w
	$(BUF) generate
	cd deploy && $(GO) run ./policysync

.PHONY: api-baseline
api-baseline: $(BUF) ## record the current API as the baseline that buf breaking compares with
	$(BUF) build proto -o api/authz-v1.binpb

.PHONY: check-gen
check-gen: gen ## fail when gen/ differs from what `make gen` writes
	@git add -N gen >/dev/null 2>&1 || true
	@git add -N deploy/kubernetes >/dev/null 2>&1 || true
	@if ! git diff --quiet -- gen proto deploy/kubernetes; then \
		echo "generated files are out of date; run 'make gen' and commit:"; \
		git diff --stat -- gen proto deploy/kubernetes; exit 1; fi
	@echo "gen/ and the policies ConfigMap are in sync with their sources"

.PHONY: lint
lint: $(BUF) $(OPA) ## buf lint and format, gofmt, go vet, opa fmt and opa check --strict
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(BUF) breaking proto --against api/authz-v1.binpb
	@out=$$(gofmt -l cmd internal policies gen bench deploy tools 2>/dev/null); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	@out=$$($(OPA) fmt -l policies); \
		if [ -n "$$out" ]; then echo "opa fmt needed:"; echo "$$out"; exit 1; fi
	$(OPA) check --strict policies

.PHONY: deps
deps: tools ## install what the tests need: tools, PostgreSQL and MariaDB (Debian, root), the Superset venv
	bash scripts/install-databases.sh
	bash scripts/superset-env.sh

.PHONY: test
test: deps ## run every test: opa, Go (race), deploy, Superset end to end
	$(MAKE) test-policy test-go test-deploy test-superset

.PHONY: test-go
test-go: $(OPA) ## Go tests with -race (fuzz seed corpora included, real databases)
	$(GO) test $(GOTEST_FLAGS) ./...

.PHONY: test-policy
test-policy: $(OPA) ## opa test over policies/ with at least 90% coverage
	$(OPA) test policies -v
	bash scripts/opa-coverage.sh $(OPA) policies 90

.PHONY: test-deploy
test-deploy: image ## Kubernetes manifest validation, image build and its check
	cd deploy && $(GO) test -count=1 ./...

.PHONY: test-superset
test-superset: build ## Python unit tests and the end-to-end test in a real Superset
	bash integrations/superset/run-tests.sh

.PHONY: bench-smoke
bench-smoke: ## build and run every Go benchmark once, so that none rots
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

.PHONY: check
check: check-gen lint test ## everything CI checks

.PHONY: build
build: ## build bin/authzd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/authzd ./cmd/authzd

.PHONY: run
run: build ## run the service on its embedded dev default (loopback, NOT FOR PRODUCTION)
	./bin/authzd serve --dev

.PHONY: bench
bench: build ## side-by-side benchmark against OPA's server (see BENCHMARKS.md)
	bash bench/run.sh

.PHONY: image
image: build ## build the OCI image archive bin/authzd-image.tar without Docker, and check it
	cd deploy && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		$(GO) run ./image build -binary ../bin/authzd -policies ../policies \
		-output ../bin/authzd-image.tar -tag authzd:$(VERSION) -version $(VERSION) \
		-revision $$(git rev-parse HEAD 2>/dev/null || echo unknown)
	cd deploy && $(GO) run ./image check ../bin/authzd-image.tar

.PHONY: clean
clean: ## remove build output (keeps .tools)
	rm -rf bin bench/out
