package loggen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// logLine is one logical line an application writes.
type logLine struct {
	stream string
	msg    string
}

// kind is the kind of log event drawn from a Mix.
type kind int

const (
	kindNormal kind = iota
	kindStderr
	kindStackTrace
	kindLong
)

// longMin and longMax bound the length of long lines.
const (
	longMin = DefaultSplitBytes + 1
	longMax = 100 * 1024
)

// generator writes the log of one pod: a start-up sequence, then events
// drawn from the Mix. Everything it writes follows from its random source
// and the times it is given.
type generator struct {
	rng     *rand.Rand
	pod     *podSpec
	app     *app
	weights [4]float64 // by kind
	total   float64
	step    int // start-up step; -1 once started
	reqs    int // requests served, for ids
	started time.Time
}

func newGenerator(seed int64, mix Mix, pod *podSpec) *generator {
	g := &generator{
		rng: rand.New(rand.NewPCG(uint64(seed), uint64(pod.index)+1)),
		pod: pod,
		app: &pod.App,
	}
	normal := mix.JSON
	if g.app.style == styleSpring {
		normal = mix.Text
	}
	g.weights = [4]float64{normal, mix.Stderr, mix.StackTrace, mix.Long}
	for _, w := range g.weights {
		g.total += w
	}
	return g
}

// next appends the lines of the next log event (one line, or several for a
// banner or a stack trace) that the application logs at t.
func (g *generator) next(t time.Time, out []logLine) []logLine {
	if g.step >= 0 {
		if g.step == 0 {
			g.started = t
		}
		n := len(out)
		switch g.app.style {
		case styleSpring:
			out = g.springStartup(t, out)
		case styleGo:
			out = g.goStartup(t, out)
		default:
			out = g.nodeStartup(t, out)
		}
		if len(out) > n {
			g.step++
			return out
		}
		g.step = -1
	}
	g.reqs++
	k := g.pick()
	switch g.app.style {
	case styleSpring:
		return g.springEvent(k, t, out)
	case styleGo:
		return g.goEvent(k, t, out)
	default:
		return g.nodeEvent(k, t, out)
	}
}

func (g *generator) pick() kind {
	if g.total <= 0 {
		return kindNormal
	}
	x := g.rng.Float64() * g.total
	for k, w := range g.weights {
		if x < w {
			return kind(k)
		}
		x -= w
	}
	return kindNormal
}

// Helpers.

func (g *generator) uuid() string { return randUUID(g.rng) }

func (g *generator) between(lo, hi int) int { return lo + g.rng.IntN(hi-lo+1) }

func (g *generator) product() product { return catalog[g.rng.IntN(len(catalog))] }

func (g *generator) podIP() string {
	return fmt.Sprintf("10.42.%d.%d", g.between(0, 31), g.between(2, 254))
}

// latency returns a latency in milliseconds with one decimal, mostly small.
func (g *generator) latency() float64 {
	ms := math.Exp(g.rng.NormFloat64()*0.9 + 1.5)
	return math.Round(ms*10) / 10
}

func (g *generator) status() int {
	switch x := g.rng.IntN(100); {
	case x < 90:
		return 200
	case x < 94:
		return 201
	case x < 97:
		return 404
	case x < 99:
		return 400
	default:
		return 500
	}
}

func money(cents int) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// product is an item of the sample store's catalog; names carry accents, CJK
// and emoji so that every stage sees real UTF-8.
type product struct {
	id, name, desc string
	price          int // cents
	tags           []string
}

var catalog = []product{
	{"510a0d7e-8e83-4193-b483-e27e09ddc34d", "Chrono Classic", "Elegant watch with a stainless steel case", 12999, []string{"watch", "luxury"}},
	{"6d62d909-f957-430e-8689-b5129c0bb75e", "Pocket Watch", "Brass pocket watch on a chain", 3999, []string{"watch"}},
	{"808a2de1-1aaa-4c25-a9b9-6612e8f29a38", "Café Crème ☕ Mug", "Große Tasse für Kaffee — spülmaschinenfest", 1499, []string{"kitchen"}},
	{"a0a4f044-b040-410d-8ead-4de0446aec7e", "東京 ラーメン Bowl", "陶器のどんぶり、直径 18 cm", 2450, []string{"kitchen", "日本"}},
	{"d27cf49f-b689-4a75-a249-d373e0330bb5", "Smörgåsbord Tray", "Bricka i björk från Småland", 3300, []string{"kitchen"}},
	{"d4edfedb-dbe9-4dd9-aae8-009489394955", "Rocket Socks 🚀", "Cotton socks, one size — 🧦 x2", 899, []string{"clothing", "fun"}},
	{"4f18544b-70a5-4352-8e19-0d070f46745d", "Wood Watch", "Hand-made maple wood watch", 8999, []string{"watch", "eco"}},
	{"79bce3f3-935f-4912-8c62-0d2f3e059405", "Crème brûlée Torch 🍮", "Chalumeau de cuisine, réglable", 2799, []string{"kitchen"}},
	{"87e89b11-d319-446d-b9be-50adcca5224a", "Σουβλάκι Skewers", "Σετ 12 ανοξείδωτων σουβλών", 1299, []string{"kitchen", "bbq"}},
	{"8757729a-c518-4356-8694-9e795a9b3237", "Ёлка Ornament", "Стеклянная ёлочная игрушка ручной работы", 599, []string{"seasonal"}},
	{"a1258cd2-176c-4507-ade6-746dab5ad625", "北京 Tea Set", "紫砂茶具 六件套", 5600, []string{"kitchen", "tea"}},
	{"ee3715be-b4ba-11ea-b3de-0242ac130004", "Naïve Façade Poster", "Affiche « naïve », 50×70 cm", 1999, []string{"decor"}},
}

// longPayload returns a JSON array of products between longMin and longMax
// bytes long once prefix and suffix are added: a response body logged
// whole, the usual source of very long lines.
func (g *generator) longPayload(prefix, suffix string) string {
	target := g.between(longMin, longMax-2048)
	var b strings.Builder
	b.Grow(target + 1024)
	b.WriteString(prefix)
	b.WriteByte('[')
	buf := make([]byte, 0, 512)
	for i := 0; b.Len()+len(suffix) < target; i++ {
		p := g.product()
		buf = buf[:0]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"id":`...)
		buf = appendJSONString(buf, p.id)
		buf = append(buf, `,"name":`...)
		buf = appendJSONString(buf, p.name)
		buf = append(buf, `,"description":`...)
		buf = appendJSONString(buf, p.desc)
		buf = append(buf, `,"price":`...)
		buf = strconv.AppendFloat(buf, float64(p.price)/100, 'f', 2, 64)
		buf = append(buf, `,"count":`...)
		buf = strconv.AppendInt(buf, int64(g.between(0, 500)), 10)
		buf = append(buf, `,"tags":[`...)
		for j, tag := range p.tags {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, tag)
		}
		buf = append(buf, "]}"...)
		b.Write(buf)
	}
	b.WriteByte(']')
	b.WriteString(suffix)
	return b.String()
}

// jsonLine builds one JSON object with fields in the order they are added.
type jsonLine struct{ b []byte }

func newJSON() *jsonLine { return &jsonLine{b: append(make([]byte, 0, 256), '{')} }

func (j *jsonLine) key(k string) *jsonLine {
	if len(j.b) > 1 {
		j.b = append(j.b, ',')
	}
	j.b = appendJSONString(j.b, k)
	j.b = append(j.b, ':')
	return j
}

func (j *jsonLine) str(k, v string) *jsonLine {
	j.key(k)
	j.b = appendJSONString(j.b, v)
	return j
}

func (j *jsonLine) int(k string, v int64) *jsonLine {
	j.key(k)
	j.b = strconv.AppendInt(j.b, v, 10)
	return j
}

func (j *jsonLine) float(k string, v float64) *jsonLine {
	j.key(k)
	j.b = strconv.AppendFloat(j.b, v, 'f', -1, 64)
	return j
}

// raw adds a value that is already JSON.
func (j *jsonLine) raw(k, v string) *jsonLine {
	j.key(k)
	j.b = append(j.b, v...)
	return j
}

func (j *jsonLine) String() string { return string(append(j.b, '}')) }
