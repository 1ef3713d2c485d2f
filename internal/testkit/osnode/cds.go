package osnode

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
)

// Class data sharing (CDS): instead of loading and verifying OpenSearch's classes from jars on
// every start, the JVM can map them from an archive written by an earlier run. Measured here, a
// node answers after ~2.7 s instead of ~3.9 s, and tests start one node per test binary.
//
// The first node that stops cleanly records the archive (-XX:ArchiveClassesAtExit writes it
// while the JVM exits); Stop checks it and moves it next to the distribution, where later
// nodes map it (-XX:SharedArchiveFile). A truncated archive crashes the JVM (SIGBUS), so an
// archive is only kept after a clean exit, checked with -Xshare:on (fails on any mismatch), and
// put in place by an atomic rename. An archive that no longer fits (JDK updated in place) is
// ignored by the JVM under -Xshare:auto; its name is keyed by the JDK's release file so an
// update starts a new one.

// cdsArchive returns where the shared archive for this JDK and distribution lives.
func cdsArchive(home, javaHome string) string {
	h := sha256.New()
	release, _ := os.ReadFile(filepath.Join(javaHome, "release"))
	h.Write([]byte(javaHome + "\x00" + home + "\x00"))
	h.Write(release)
	return filepath.Join(filepath.Dir(home), filepath.Base(home)+"-cds-"+hex.EncodeToString(h.Sum(nil))[:12]+".jsa")
}

// cdsArgs returns the JVM options for class data sharing, and the file the JVM will record an
// archive to ("" when it maps an existing one or CDS is off).
func (n *Node) cdsArgs() (args []string, recording string) {
	if n.cfg.NoClassCache {
		return nil, ""
	}
	if _, err := os.Stat(n.cds); err == nil {
		return []string{"-XX:SharedArchiveFile=" + n.cds}, ""
	}
	rec := filepath.Join(n.cfg.tmpDir(), "classes.jsa")
	os.Remove(rec) // never mistake an old, maybe truncated, recording for this run's
	// -Xlog: the dump lists every class it skips, hundreds of lines.
	return []string{"-XX:ArchiveClassesAtExit=" + rec, "-Xlog:cds=off,cds+dynamic=off"}, rec
}

// keepCDS checks a recorded archive and moves it into place. Failures only cost the speed-up,
// so they are not reported.
func (n *Node) keepCDS(recording string) {
	if recording == "" {
		return
	}
	defer os.Remove(recording)
	if _, err := os.Stat(n.cds); err == nil {
		return // another node was first
	}
	check := exec.Command(filepath.Join(n.javaHome, "bin", "java"), "-Xshare:on", "-XX:SharedArchiveFile="+recording,
		"-cp", n.classpath(), "-version")
	check.Dir = n.cfg.tmpDir() // where a crash report would land
	if check.Run() != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(n.cds), filepath.Base(n.cds)+".tmp-*")
	if err != nil {
		return // not writable: run without
	}
	f.Close()
	defer os.Remove(f.Name()) // after the rename, a no-op
	if copyFile(recording, f.Name(), 0o644) == nil {
		os.Rename(f.Name(), n.cds)
	}
}
