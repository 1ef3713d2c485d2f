// Package document turns a parsed log record into the OpenSearch document of
// the design (field names compatible with Fluent Bit's kubernetes filter) and
// derives its id. It does no I/O.
//
// A document id is a hash of where the line came from: the container
// directory (namespace, pod, pod uid, container), the file's fingerprint and
// the record's offset. The same line sent twice gets the same id; two lines
// differ in at least one of these.
package document

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
	"unicode/utf8"
)

// Meta is what is known about the container that wrote a line.
type Meta struct {
	PodName       string
	Namespace     string
	PodID         string
	ContainerName string
	Host          string
	// PodExtra and ContainerExtra hold further members of the "kubernetes"
	// object, each starting with a comma (`,"labels":{…}`, `,"docker_id":"…"`),
	// valid JSON: enrichment renders them once when a pod changes, so that a
	// record costs a few copies. The pod's part is shared by its containers;
	// ImageExtra (`,"container_hash":…,"container_image":…`) follows
	// ContainerExtra, apart so that containers of one image share it.
	PodExtra       []byte
	ContainerExtra []byte
	ImageExtra     []byte
	// DataFields, when positive, makes a message that is a JSON object also
	// appear under "data", with at most that many values kept.
	DataFields int
}

// Line is one record ready to become a document.
type Line struct {
	Time      time.Time // zero for a malformed line
	Stream    string
	Message   []byte
	Offset    uint64
	Malformed bool
	Truncated bool
	// OriginalBytes is what the record took in its log file (runtime
	// prefixes and newlines included); written for a truncated line, so
	// that a reader knows how much was cut.
	OriginalBytes uint64
	// MetadataTruncated: the pod's labels, annotations and container
	// details were left out to keep the document within its limit.
	MetadataTruncated bool
}

// IDLen is the length of a document id: 128 bits in unpadded base64url.
const IDLen = 22

// AppendID appends the id of the record at offset in the file identified by
// its container directory and fingerprint.
func AppendID(dst []byte, containerDir string, fingerprint, offset uint64) []byte {
	var buf [256]byte
	b := append(buf[:0], containerDir...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, fingerprint)
	b = binary.BigEndian.AppendUint64(b, offset)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// Append appends the JSON document for l to dst. now stands in for the time
// of a malformed line, so that it still shows up in a time-filtered view.
func Append(dst []byte, m *Meta, l *Line, now time.Time) []byte {
	t := l.Time
	if t.IsZero() {
		t = now
	}
	t = t.UTC()
	dst = append(dst, `{"@timestamp":"`...)
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, `","time":"`...)
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00")
	dst = append(dst, `","stream":`...)
	dst = appendJSON(dst, l.Stream)
	dst = append(dst, `,"log":`...)
	dst = appendJSON(dst, l.Message)
	dataTruncated := false
	if m.DataFields > 0 && len(l.Message) > 0 && !l.Truncated {
		// A truncated line is not a whole object: it stays text.
		mark := len(dst)
		dst = append(dst, `,"data":`...)
		var ok bool
		if dst, ok, dataTruncated = appendObject(dst, l.Message, m.DataFields); !ok {
			dst = dst[:mark]
		}
	}
	dst = append(dst, `,"kubernetes":{"pod_name":`...)
	dst = appendJSON(dst, m.PodName)
	dst = append(dst, `,"namespace_name":`...)
	dst = appendJSON(dst, m.Namespace)
	dst = append(dst, `,"pod_id":`...)
	dst = appendJSON(dst, m.PodID)
	dst = append(dst, `,"container_name":`...)
	dst = appendJSON(dst, m.ContainerName)
	if m.Host != "" {
		dst = append(dst, `,"host":`...)
		dst = appendJSON(dst, m.Host)
	}
	dst = append(dst, m.PodExtra...)
	dst = append(dst, m.ContainerExtra...)
	dst = append(dst, m.ImageExtra...)
	dst = append(dst, `},"podlogs":{"offset":`...)
	dst = appendUint(dst, l.Offset)
	if l.Malformed {
		dst = append(dst, `,"malformed":true`...)
	}
	if l.Truncated {
		dst = append(dst, `,"truncated":true`...)
		if l.OriginalBytes > 0 {
			dst = append(dst, `,"original_bytes":`...)
			dst = appendUint(dst, l.OriginalBytes)
		}
	}
	if l.MetadataTruncated {
		dst = append(dst, `,"metadata_truncated":true`...)
	}
	if dataTruncated {
		dst = append(dst, `,"data_truncated":true`...)
	}
	return append(dst, "}}"...)
}

// AppendLimited appends l's document as Append does, in at most limit bytes
// (0: no limit), and tells whether it had to cut. A longer document keeps
// the first bytes of its log that fit, cut at a character, and is flagged
// truncated with the record's original size; "data" is left out (a cut line
// is not a whole object). Where the metadata alone would pass the limit
// (a pod with huge annotations), labels, annotations and container details
// are left out too, and flagged. A limit under MinLimit is not always met.
func AppendLimited(dst []byte, m *Meta, l *Line, now time.Time, limit int) ([]byte, bool) {
	start := len(dst)
	dst = Append(dst, m, l, now)
	if limit <= 0 || len(dst)-start <= limit {
		return dst, false
	}
	// Rare: render what surrounds the log once to measure it, then again
	// with as much of the log as fits.
	cut := *l
	cut.Truncated = true
	cut.Message = nil
	dst = Append(dst[:start], m, &cut, now)
	if len(dst)-start > limit {
		lean := *m
		lean.PodExtra, lean.ContainerExtra, lean.ImageExtra = nil, nil, nil
		m = &lean
		cut.MetadataTruncated = true
		dst = Append(dst[:start], m, &cut, now)
	}
	cut.Message = l.Message[:jsonPrefix(l.Message, limit-(len(dst)-start))]
	return Append(dst[:start], m, &cut, now), true
}

// MinLimit is the least document limit AppendLimited always meets: a
// document without labels, annotations and log, whose names Kubernetes
// bounds (253 bytes each, 6 bytes a character escaped), is smaller.
const MinLimit = 16 << 10

// jsonPrefix returns the length of the longest prefix of s, ending at a
// character, that appendJSON writes in at most room bytes (quotes aside).
// It follows appendJSON's escaping character for character.
func jsonPrefix(s []byte, room int) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		size, out := 1, 1
		switch {
		case c < utf8.RuneSelf && c >= 0x20 && c != '"' && c != '\\':
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			out = 2
		case c < utf8.RuneSelf:
			out = 6
		default:
			var r rune
			r, size = utf8.DecodeRune(s[i:])
			switch {
			case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
				out = 6
			default:
				out = size
			}
		}
		if n+out > room {
			return i
		}
		n += out
		i += size
	}
	return len(s)
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSON writes s as a JSON string, replacing invalid UTF-8 with U+FFFD
// so that OpenSearch never rejects a document for its encoding.
func appendJSON[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// At most 4 bytes: the conversion of a string stays on the stack.
		r, size := utf8.DecodeRune([]byte(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendString appends s as a JSON string, as documents write every string:
// invalid UTF-8 replaced by U+FFFD, U+2028/U+2029 escaped.
func AppendString(dst []byte, s string) []byte { return appendJSON(dst, s) }
