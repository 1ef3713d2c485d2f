// Package loggen writes Kubernetes pod log files the way kubelet and a
// container runtime do, for the live demo (make run), end-to-end tests and
// benchmarks.
//
// # Layout and formats
//
// Run writes <root>/<namespace>_<pod>_<pod-uid>/<container>/0.log for each
// pod, as under /var/log/pods. Pods belong to one Deployment per namespace
// (pod names <app>-<pod-template-hash>-<5 chars>, in Kubernetes' safe
// alphabet), uids are version 4 UUIDs; all follow from Config.Seed.
//
// FileWriter writes one file in either runtime format, with one write(2)
// per physical line and append-only, so a concurrent reader sees what it
// would see on a node:
//
//   - CRI (containerd, CRI-O): "<RFC 3339, 9 fractional digits, UTC>
//     <stdout|stderr> <P|F> <message>\n". A message longer than SplitBytes
//     (16 KiB, containerd's max_container_log_line_size) becomes "P" lines
//     and a final "F" line, cut on bytes: a UTF-8 character may straddle two
//     parts.
//   - Docker json-file: {"log":"<message>\n","stream":"...","time":"<RFC
//     3339 nano>"}\n, the message escaped as encoding/json does without HTML
//     escaping. Longer messages become several objects; only the last ends
//     its log value with "\n". Unlike Docker, which cuts on bytes and turns
//     the broken halves into U+FFFD, parts end on a UTF-8 boundary, so the
//     parts always concatenate to the message written.
//
// Rotation follows kubelet: the live file is renamed to
// 0.log.<20060102-150405>, a new 0.log is opened, and before that the older
// rotated files are gzipped (.gz) and those beyond the limit deleted, the
// newest rotated file staying uncompressed until the next rotation.
//
// # Content
//
// Each namespace runs an application of the AWS retail-store sample: ui,
// carts and orders are Spring Boot services (JVM and agent lines on stderr,
// the banner, Spring Boot's start-up in its console layout, then request
// lines; Java exceptions one line per frame), catalog is a Go service
// logging zap JSON, checkout a NestJS service (text start-up, pino JSON).
// Other namespaces get one of the three by a hash of their name. Messages
// carry accents, CJK and emoji; Mix weighs requests, stderr warnings,
// stack traces and lines longer than 16 KiB.
//
// # Invariants
//
//   - For a seed, names and messages are the same on every run; only the
//     timestamps come from the clock (in a testing/synctest bubble the
//     whole tree is the same byte for byte).
//   - Config.Observe sees every logical line once, after it was written, in
//     file order per pod; Line.File is the live file it went to.
//   - A message never contains '\n'; WriteLine rejects one (ErrNewline).
//   - Rate paces pods with timers, never by spinning.
package loggen
