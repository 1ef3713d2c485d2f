package sink

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IndexMode says what Config.Index names.
type IndexMode int

const (
	// PlainIndex: documents go to the index Config.Index names or, when it
	// holds date codes, to the index their own @timestamp names.
	PlainIndex IndexMode = iota
	// DataStream: documents go to the data stream Config.Index names;
	// OpenSearch keeps its backing indices (.ds-<name>-000001, …), and an
	// ISM rollover action starts new ones.
	DataStream
)

// ParseIndexMode parses --index-mode.
func ParseIndexMode(s string) (IndexMode, bool) {
	switch s {
	case "index":
		return PlainIndex, true
	case "data-stream":
		return DataStream, true
	}
	return PlainIndex, false
}

func (m IndexMode) String() string {
	if m == DataStream {
		return "data-stream"
	}
	return "index"
}

// dateCodes are the strftime-like codes an index name may hold, each
// replaced by a part of the document's @timestamp ("2006-01-02T15…", UTC):
// the byte range it takes.
var dateCodes = map[byte][2]int{'Y': {0, 4}, 'm': {5, 7}, 'd': {8, 10}, 'H': {11, 13}}

// tsKeyLen is the length of the timestamp prefix the codes read.
const tsKeyLen = 13

// IsDatePattern reports whether index holds date codes.
func IsDatePattern(index string) bool { return strings.IndexByte(index, '%') >= 0 }

// ValidateIndex checks an index name or date pattern: only %Y %m %d %H, and
// a valid OpenSearch index name once formatted.
func ValidateIndex(index string) error {
	if index == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(index); i++ {
		if index[i] != '%' {
			continue
		}
		if i+1 == len(index) {
			return errors.New("ends with a lone %")
		}
		if _, ok := dateCodes[index[i+1]]; !ok {
			return fmt.Errorf("%%%c is not a date code; use %%Y %%m %%d %%H", index[i+1])
		}
		i++
	}
	if index[0] == '%' {
		// The template's pattern would be "*…": every index of the cluster.
		return errors.New("starts with a date code; put a fixed name first (eks-pod-logs-%Y.%m.%d)")
	}
	name := string(formatIndex(nil, index, []byte("2026-11-25T08")))
	switch {
	case len(name) > 255:
		return errors.New("longer than 255 bytes")
	case name != strings.ToLower(name):
		return errors.New("has upper-case letters")
	case strings.ContainsAny(name, `\/*?"<>| ,#:`):
		return errors.New(`holds a character of \ / * ? " < > | , # : or a space`)
	case strings.IndexAny(name[:1], "-_+.") == 0:
		return errors.New("starts with -, _, + or a dot")
	}
	return nil
}

// TemplatePattern is the index pattern of the template for index: the name
// itself, or for a date pattern its fixed start and end around a *
// ("eks-pod-logs-%Y.%m.%d" → "eks-pod-logs-*").
func TemplatePattern(index string) string {
	first := strings.IndexByte(index, '%')
	if first < 0 {
		return index
	}
	last := strings.LastIndexByte(index, '%')
	return index[:first] + "*" + index[last+2:]
}

// formatIndex appends pattern with its codes replaced from ts, the first
// tsKeyLen bytes of an RFC 3339 timestamp.
func formatIndex(dst []byte, pattern string, ts []byte) []byte {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '%' && i+1 < len(pattern) {
			if r, ok := dateCodes[pattern[i+1]]; ok {
				dst = append(dst, ts[r[0]:r[1]]...)
				i++
				continue
			}
		}
		dst = append(dst, pattern[i])
	}
	return dst
}

// indexNamer names the index of each document. It keeps the last name it
// made: documents come in time order, so that naming one costs a compare.
// One per worker: not safe for concurrent use.
type indexNamer struct {
	pattern string
	keyLen  int // bytes of the timestamp the name depends on: 0 (a fixed name), 10 (days) or 13 (hours)
	key     [tsKeyLen]byte
	quotedN []byte // JSON-quoted name for key (for a fixed name: always)
	now     func() time.Time
}

func newIndexNamer(pattern string) *indexNamer {
	n := &indexNamer{pattern: pattern, now: time.Now}
	for i := 0; i+1 < len(pattern); i++ {
		if pattern[i] == '%' {
			if r, ok := dateCodes[pattern[i+1]]; ok {
				n.keyLen = max(n.keyLen, r[1])
			}
			i++
		}
	}
	if n.keyLen == 0 {
		var b bytes.Buffer
		writeJSONString(&b, pattern)
		n.quotedN = b.Bytes()
	}
	return n
}

// quoted returns the JSON-quoted name of the index of doc, valid until the
// next call.
func (n *indexNamer) quoted(doc []byte) []byte {
	if n.keyLen == 0 {
		return n.quotedN
	}
	var buf [tsKeyLen]byte
	ts := timestampOf(doc)
	if ts == nil {
		ts = n.now().UTC().AppendFormat(buf[:0], "2006-01-02T15")
	}
	if n.quotedN != nil && bytes.Equal(ts[:n.keyLen], n.key[:n.keyLen]) {
		return n.quotedN
	}
	copy(n.key[:], ts[:n.keyLen])
	n.quotedN = append(formatIndex(append(n.quotedN[:0], '"'), n.pattern, ts), '"')
	return n.quotedN
}

// name returns the name of the index of doc.
func (n *indexNamer) name(doc []byte) string {
	q := n.quoted(doc)
	return string(q[1 : len(q)-1])
}

var (
	tsFirst = []byte(`{"@timestamp":"`)
	tsField = []byte(`"@timestamp":"`)
)

// timestampOf returns the first tsKeyLen bytes of doc's @timestamp, or nil.
// The document package writes @timestamp first; elsewhere costs a search.
func timestampOf(doc []byte) []byte {
	var ts []byte
	if bytes.HasPrefix(doc, tsFirst) {
		ts = doc[len(tsFirst):]
	} else if i := bytes.Index(doc, tsField); i >= 0 {
		ts = doc[i+len(tsField):]
	}
	if len(ts) < tsKeyLen {
		return nil
	}
	for i, c := range ts[:tsKeyLen] {
		switch i {
		case 4, 7:
			if c != '-' {
				return nil
			}
		case 10:
			if c != 'T' {
				return nil
			}
		default:
			if c < '0' || c > '9' {
				return nil
			}
		}
	}
	return ts[:tsKeyLen]
}
