// Package osnode runs a real single-node OpenSearch for tests and `make run`.
//
// The node is the integ-test distribution from Maven Central (see EnsureDistribution and
// scripts/opensearch-dist.sh), run on a local JDK 11..23 (17 preferred; 24+ dropped the
// SecurityManager that OpenSearch 2.x needs). Everything binds 127.0.0.1.
//
// Invariants and choices:
//   - Each node owns Config.Dir: a copy of the distribution's config, data, logs and tmp. The
//     distribution itself is only read, so many nodes may share one.
//   - OpenSearch refuses to run as root, so when this process is root the JVM runs as nobody
//     (65534) and Dir is handed to that user. Dir's parents must then be traversable by nobody:
//     a directory from os.MkdirTemp("", ...) is, one from t.TempDir() is not (its parent is 0700).
//   - The JVM is started directly, not through bin/opensearch: the script starts three helper
//     JVMs first (version check, keystore check, options parser), which costs seconds. Start
//     runs the options parser once itself, so system and ergonomic JVM options stay the
//     distribution's own.
//   - Start-up is tuned for small machines and short lives: serial GC, C1 only, and a class data
//     sharing archive recorded on the first clean stop and reused afterwards (see cds.go).
//   - The JVM dies with its parent (Pdeathsig) and runs in its own process group, so neither a
//     crashed test binary nor Stop leaves a process behind.
//   - Plugins (Config.Plugins, e.g. the security plugin, which is not in the integ-test
//     distribution) are installed by the distribution's own bin/opensearch-plugin into a copy of
//     it, built once under .cache and named for what it holds, so later starts cost nothing
//     extra (see EnsurePlugins). A node that needs TLS or credentials on its REST port says so
//     with Config.ClientTLS and Config.User, for the readiness check.
package osnode
