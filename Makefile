# podlogs — build, run and test. Tools are pinned in tools/go.mod (and
# protoc-gen-go in go.mod, to match the protobuf runtime) and built into
# .cache/bin; nothing is assumed to be installed but Go, Java 17 and Maven.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CACHE    ?= $(CURDIR)/.cache
BIN      := $(CURDIR)/bin
TOOLBIN  := $(CACHE)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
OPENSEARCH_VERSION ?= 2.19.6
# kube-apiserver + etcd for envtest (scripts/kube-assets.sh).
KUBE_VERSION ?= 1.35.4
ETCD_VERSION ?= 3.6.5
GOTEST   ?= go test
# Integration tests share one OpenSearch node per test binary; give slow
# machines room.
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 5s

export PATH := $(TOOLBIN):$(PATH)
export OPENSEARCH_VERSION
export KUBE_VERSION ETCD_VERSION
export KUBEBUILDER_ASSETS ?= $(CACHE)/kube-assets/k8s-$(KUBE_VERSION)-etcd-$(ETCD_VERSION)
export PODLOGS_CACHE_DIR := $(CACHE)

COMMANDS := forwarder/cmd/forwarder aggregator/cmd/aggregator cmd/loggen cmd/devstack

.PHONY: build
build: ## build the binaries into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(COMMANDS))

.PHONY: run
run: build opensearch-dist ## start OpenSearch, the aggregator, a forwarder and a log generator
	$(BIN)/devstack --bin=$(BIN) --dir=$(CURDIR)/.run

.PHONY: tools
tools: $(TOOLBIN)/buf $(TOOLBIN)/protoc-gen-go $(TOOLBIN)/protoc-gen-go-grpc $(TOOLBIN)/staticcheck deploy-tools

$(TOOLBIN)/buf $(TOOLBIN)/protoc-gen-go-grpc $(TOOLBIN)/staticcheck: tools/go.mod tools/go.sum
	@mkdir -p $(TOOLBIN)
	cd tools && go build -o $(TOOLBIN)/ github.com/bufbuild/buf/cmd/buf google.golang.org/grpc/cmd/protoc-gen-go-grpc honnef.co/go/tools/cmd/staticcheck

$(TOOLBIN)/protoc-gen-go: go.mod go.sum
	@mkdir -p $(TOOLBIN)
	go build -o $(TOOLBIN)/ google.golang.org/protobuf/cmd/protoc-gen-go

# Deployment: helm and kubeconform (tools/go.mod), and kubeconform's JSON schemas made offline
# from the Kubernetes swagger.json that k8s.io/kube-openapi carries (tools/kubeschema).
CHART              := deploy/helm/podlogs
KUBE_SCHEMA_VERSION := 1.27.0
KUBE_SCHEMAS       := $(CACHE)/kubernetes-json-schema
KUBECONFORM_FLAGS  := -strict -summary -kubernetes-version $(KUBE_SCHEMA_VERSION) -skip ServiceMonitor,Certificate \
	-schema-location '$(KUBE_SCHEMAS)/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'
DASHBOARDS_URL     ?= http://localhost:5601

$(TOOLBIN)/helm $(TOOLBIN)/kubeconform: tools/go.mod tools/go.sum
	@mkdir -p $(TOOLBIN)
	cd tools && go build -o $(TOOLBIN)/ helm.sh/helm/v3/cmd/helm github.com/yannh/kubeconform/cmd/kubeconform

$(KUBE_SCHEMAS)/v$(KUBE_SCHEMA_VERSION)-standalone-strict: tools/go.mod tools/go.sum tools/kubeschema/main.go
	cd tools && go mod download k8s.io/kube-openapi && go run ./kubeschema -out $(KUBE_SCHEMAS) -kubernetes-version $(KUBE_SCHEMA_VERSION) \
		-swagger "$$(go list -m -f '{{.Dir}}' k8s.io/kube-openapi)/pkg/schemaconv/testdata/swagger.json"
	@touch $@

.PHONY: deploy-tools
deploy-tools: $(TOOLBIN)/helm $(TOOLBIN)/kubeconform $(KUBE_SCHEMAS)/v$(KUBE_SCHEMA_VERSION)-standalone-strict

.PHONY: helm-lint
helm-lint: deploy-tools ## helm lint the chart with each value set of its ci/ folder
	@for f in $(CHART)/ci/*-values.yaml; do echo "helm lint $$f"; helm lint --strict --quiet --kube-version $(KUBE_SCHEMA_VERSION) $(CHART) -f $$f; done

.PHONY: helm-template
helm-template: deploy-tools ## render the chart for each ci/ value set and validate every manifest with kubeconform
	@for f in $(CHART)/ci/*-values.yaml; do echo "helm template $$f"; \
		helm template podlogs $(CHART) --namespace opensearch-exporter --kube-version $(KUBE_SCHEMA_VERSION) -f $$f | kubeconform $(KUBECONFORM_FLAGS); done

.PHONY: dashboards-import
dashboards-import: ## import the pod logs dashboard into OpenSearch Dashboards at DASHBOARDS_URL (DASHBOARDS_USER, DASHBOARDS_PASSWORD)
	curl -fsS -X POST '$(DASHBOARDS_URL)/api/saved_objects/_import?overwrite=true' -H 'osd-xsrf: true' \
		$(if $(DASHBOARDS_USER),-u '$(DASHBOARDS_USER):$(DASHBOARDS_PASSWORD)') --form file=@deploy/dashboards/pod-logs.ndjson
	@echo

.PHONY: proto
proto: tools ## regenerate the Go code of proto/
	buf lint
	buf generate

.PHONY: check-proto
check-proto: tools ## fail if proto/ does not lint or its generated code is stale
	buf lint
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp; \
	diff -ru -x '*.proto' $$tmp/proto proto || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }

.PHONY: fmt
fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

.PHONY: vet
vet:
	go vet ./...

.PHONY: lint
lint: tools vet ## gofmt, go vet, staticcheck, buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	staticcheck ./...
	buf lint

.PHONY: opensearch-dist
opensearch-dist: ## download (once) and unpack the OpenSearch integ-test distribution
	bash scripts/opensearch-dist.sh $(CACHE) >/dev/null

.PHONY: kube-assets
kube-assets: ## unpack (or build once) kube-apiserver and etcd for envtest
	bash scripts/kube-assets.sh $(CACHE) >/dev/null

.PHONY: test
test: lint check-proto helm-lint helm-template opensearch-dist kube-assets ## everything CI runs: lint, generated code, unit + integration tests with -race, fuzz and benchmark smoke runs
	$(GOTEST) -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz bench-smoke

.PHONY: test-unit
test-unit: ## unit tests only (no OpenSearch)
	$(GOTEST) -race -short -count=1 ./...

.PHONY: test-race
test-race: opensearch-dist kube-assets
	$(GOTEST) -race -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: e2e
e2e: opensearch-dist kube-assets ## the end-to-end tests alone
	$(GOTEST) -race -count=1 -timeout $(TEST_TIMEOUT) -run 'E2E' -v ./e2e/

# Every fuzz target runs for a short fixed time so they never rot.
FUZZ_TARGETS := \
	./internal/cri:FuzzFramer \
	./internal/cri:FuzzParseRecord \
	./internal/podpath:FuzzParse \
	./forwarder/internal/checkpoint:FuzzDecode \
	./aggregator/internal/document:FuzzAppend \
	./aggregator/internal/document:FuzzAppendObject \
	./aggregator/internal/document:FuzzAppendLimited \
	./aggregator/internal/ingest:FuzzConvertFitsLimits \
	./internal/docmsg:FuzzAppend

# A failing input is written to the package's testdata/fuzz and fails the
# run. A failure without one (the fuzzing engine's own trouble, such as a
# worker lost on a loaded machine) is shown and the target is run again.
.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		for try in 1 2; do \
			if go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then break; fi; \
			tail -n 30 $$out; \
			if grep -q 'Failing input written to' $$out || [ $$try = 2 ]; then exit 1; fi; \
			echo "fuzz $$pkg $$fn: the engine failed with no failing input; once more"; \
		done; \
	done

.PHONY: bench-smoke
bench-smoke: ## run every micro-benchmark once, so they never rot
	$(GOTEST) -run '^$$' -bench . -benchtime 1x -short ./... >/dev/null

# The benchmarks of issue 7, stage by stage, on this machine (starts its own
# OpenSearch and JetStream): bench/RESULTS.md, plus raw output (benchstat)
# and the end-to-end run's profiles in bench/out/. BENCHFLAGS: e.g.
# -stages 3,5 to run some stages only.
.PHONY: bench
bench: opensearch-dist kube-assets ## all benchmark stages: bench/RESULTS.md, raw output and profiles in bench/out/
	go run ./bench/cmd/benchrun $(BENCHFLAGS)

.PHONY: clean
clean:
	rm -rf $(BIN) .run

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'
