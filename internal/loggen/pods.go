package loggen

import (
	"encoding/hex"
	"hash/fnv"
	"math/rand/v2"
	"path/filepath"
	"strings"
)

// safeAlphabet is the alphabet of Kubernetes' rand.SafeEncodeString, used in
// pod-template-hash values and pod name suffixes (no vowels, no 0, 1 or 3).
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// topologyStream is the PCG stream of the random source that names pods;
// content streams are 1 + the pod's index.
const topologyStream = 0x6c6f6767656e // "loggen"

// podSpec is one generated pod with its single container.
type podSpec struct {
	index     int
	Namespace string
	Name      string // <app>-<pod-template-hash>-<suffix>
	UID       string
	Container string
	Hash      string // pod-template-hash
	Format    Format
	App       app
	File      string // live log file, relative to the root
}

// planPods names cfg.Pods pods, spread round robin over cfg.Namespaces, all
// derived from cfg.Seed. Every namespace holds one Deployment named after it.
func planPods(cfg Config) []podSpec {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), topologyStream))
	hashes := make([]string, len(cfg.Namespaces))
	for i := range hashes {
		hashes[i] = randSafe(rng, 10)
	}
	used := make(map[string]bool, cfg.Pods)
	pods := make([]podSpec, cfg.Pods)
	for i := range pods {
		ns := cfg.Namespaces[i%len(cfg.Namespaces)]
		hash := hashes[i%len(cfg.Namespaces)]
		var name string
		for {
			name = ns + "-" + hash + "-" + randSafe(rng, 5)
			if !used[name] {
				used[name] = true
				break
			}
		}
		uid := randUUID(rng)
		format := FormatCRI
		switch cfg.Format {
		case "docker":
			format = FormatDocker
		case "mixed":
			format = Format(rng.IntN(2))
		}
		pods[i] = podSpec{
			index:     i,
			Namespace: ns,
			Name:      name,
			UID:       uid,
			Container: ns,
			Hash:      hash,
			Format:    format,
			App:       appFor(ns),
			File:      filepath.Join(ns+"_"+name+"_"+uid, ns, "0.log"),
		}
	}
	return pods
}

func randSafe(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(safeAlphabet[rng.IntN(len(safeAlphabet))])
	}
	return b.String()
}

// randUUID returns a random (version 4) UUID drawn from rng.
func randUUID(rng *rand.Rand) string {
	var u [16]byte
	for i := 0; i < 16; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// style is how an application logs.
type style int

const (
	styleSpring style = iota // Java, Spring Boot's console layout
	styleGo                  // Go, zap's JSON
	styleNode                // Node.js, NestJS text at start-up then pino JSON
)

// app is what a pod runs.
type app struct {
	name  string
	style style
	// Spring apps only.
	class  string // main class: UiApplication
	pkg    string // package: com.amazon.sample.ui
	abbrev string // package as logback abbreviates it: c.a.s.u
}

// appFor returns the application of namespace ns: the AWS retail-store
// sample's services by name, anything else by a hash of the name.
func appFor(ns string) app {
	st := style(0)
	switch ns {
	case "ui", "carts", "orders":
		st = styleSpring
	case "catalog":
		st = styleGo
	case "checkout":
		st = styleNode
	default:
		h := fnv.New32a()
		h.Write([]byte(ns))
		st = style(h.Sum32() % 3)
	}
	a := app{name: ns, style: st}
	if st == styleSpring {
		ident := javaIdent(ns)
		a.class = strings.ToUpper(ident[:1]) + ident[1:] + "Application"
		a.pkg = "com.amazon.sample." + ident
		a.abbrev = "c.a.s." + ident[:1]
	}
	return a
}

// javaIdent turns a DNS label into a lower-case Java identifier.
func javaIdent(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
		case r >= '0' && r <= '9' && b.Len() > 0:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "app"
	}
	return b.String()
}
