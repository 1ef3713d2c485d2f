// Package e2e runs the built forwarder and aggregator binaries as processes
// against a real OpenSearch node (started once per test binary, see
// internal/testkit/ostest) and the aggregator's embedded JetStream, writes pod log
// files the way a container runtime does, and checks what is searchable.
package e2e
