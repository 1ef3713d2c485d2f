// Package testkit is the root of the test and development kit: real servers
// and processes for tests, benchmarks and `make run`, never imported by the
// binaries podlogs ships.
//
//   - binaries: the one place the project's commands and nats-server are
//     built for tests and benchmarks
//   - osnode, ostest: a real OpenSearch node (integ-test distribution), and
//     one shared per test binary (with the security plugin on demand)
//   - natstest, natsproc: an embedded JetStream server; a nats-server process
//     to kill and restart
//   - kubetest: a real kube-apiserver and etcd (envtest)
//   - proctest: processes, free addresses, readiness, for end-to-end tests
//   - podfixture: an honest EKS pod for tests and benchmarks
//   - tlstest: certificate authorities and certificates for TLS tests
//   - repo: the repository's root, for tools that run from anywhere in it
package testkit
