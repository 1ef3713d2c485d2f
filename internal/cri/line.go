package cri

import "bytes"

// Physical lines: recognizing one line of each format. Shared by the framer
// (which only needs stream and partial/final) and the parser, so that both
// agree on what is malformed.

const (
	// maxTimeLen is the longest CRI time field accepted. RFC 3339 with
	// nanoseconds and a numeric offset is 35 bytes.
	maxTimeLen = 40
	// criHeaderLen bounds how far into a CRI line splitCRI looks to decide
	// time, stream and tag (at most maxTimeLen + len(" stdout P\r") + 1).
	// The framer classifies an over-long line from this prefix, so the
	// decision must never depend on later bytes.
	criHeaderLen = 64
)

// criLine is a CRI line split into its fields.
type criLine struct {
	time   []byte
	stream Stream
	tag    byte // 'P', 'F', or 0 for an untagged line (final)
	msg    []byte
}

// splitCRI splits "<time> <stream> <tag> <message>", or the untagged
// "<time> <stream> <message>" (see the package documentation for how the two
// are told apart). It checks the time's shape, not its value.
func splitCRI(line []byte) (criLine, bool) {
	sp := bytes.IndexByte(line[:min(len(line), maxTimeLen+1)], ' ')
	if sp < 0 || !looksLikeTime(line[:sp]) {
		return criLine{}, false
	}
	l := criLine{time: line[:sp]}
	rest := line[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout")):
		l.stream = StreamStdout
	case bytes.HasPrefix(rest, []byte("stderr")):
		l.stream = StreamStderr
	default:
		return criLine{}, false
	}
	rest = rest[len("stdout"):]
	if len(rest) == 0 {
		return l, true // "<time> <stream>": untagged, empty message
	}
	if rest[0] != ' ' {
		return criLine{}, false
	}
	rest = rest[1:]
	if len(rest) > 0 && (rest[0] == 'P' || rest[0] == 'F') {
		switch {
		case len(rest) == 1: // empty message without the trailing space
			l.tag, l.msg = rest[0], rest[1:]
			return l, true
		case rest[1] == ' ':
			l.tag, l.msg = rest[0], rest[2:]
			return l, true
		case len(rest) == 2 && rest[1] == '\r': // the same, in a CRLF file
			l.tag, l.msg = rest[0], rest[1:]
			return l, true
		}
	}
	l.msg = rest
	return l, true
}

// looksLikeTime reports whether b has the shape of an RFC 3339 time
// ("2006-01-02T15:04:05" and more). Cheap enough for the framer's hot path.
func looksLikeTime(b []byte) bool {
	if len(b) < len("2006-01-02T15:04:05Z") || len(b) > maxTimeLen {
		return false
	}
	for i, c := range b[:19] {
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// dockerLine holds the fields of a docker json-file line that matter here.
type dockerLine struct {
	log    []byte // the "log" string's raw bytes, between the quotes, escapes not decoded
	stream Stream
	time   []byte // the "time" string's raw bytes
}

// scanDocker finds "log", "stream" and "time" in a docker json-file line, in
// any order, skipping other members. It checks the object's structure but
// not escapes inside strings (decodeJSONString does). "log", "stream"
// (stdout or stderr) and "time" must be strings; the last of duplicate keys
// wins, as in encoding/json.
func scanDocker(line []byte) (dockerLine, bool) {
	var l dockerLine
	var haveLog, haveStream, haveTime bool
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return l, false
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return l, false // no members
	}
	for {
		key, j, ok := scanString(line, i)
		if !ok {
			return l, false
		}
		i = skipSpace(line, j)
		if i >= len(line) || line[i] != ':' {
			return l, false
		}
		i = skipSpace(line, i+1)
		switch string(key) { // no allocation: the compiler compares in place
		case "log", "stream", "time":
			val, j, ok := scanString(line, i)
			if !ok {
				return l, false
			}
			i = j
			switch key[0] {
			case 'l':
				l.log, haveLog = val, true
			case 't':
				l.time, haveTime = val, true
			default:
				switch string(val) {
				case "stdout":
					l.stream = StreamStdout
				case "stderr":
					l.stream = StreamStderr
				default:
					return l, false
				}
				haveStream = true
			}
		default:
			if i, ok = skipValue(line, i); !ok {
				return l, false
			}
		}
		i = skipSpace(line, i)
		if i >= len(line) {
			return l, false
		}
		if line[i] == '}' {
			break
		}
		if line[i] != ',' {
			return l, false
		}
		i = skipSpace(line, i+1)
	}
	if skipSpace(line, i+1) != len(line) {
		return l, false // bytes after the object
	}
	return l, haveLog && haveStream && haveTime
}

// endsWithNewlineEscape reports whether a raw JSON string ends with the
// escape \n, i.e. with 'n' preceded by an odd number of backslashes.
func endsWithNewlineEscape(raw []byte) bool {
	n := len(raw) - 1
	if n < 1 || raw[n] != 'n' {
		return false
	}
	return trailingBackslashes(raw[:n])%2 == 1
}

func trailingBackslashes(b []byte) int {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\\' {
		n++
	}
	return n
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space. '\r' is white space, so CRLF docker lines are accepted.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString expects a JSON string at b[i] and returns its raw contents and
// the index just past its closing quote.
func scanString(b []byte, i int) (raw []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	start := i + 1
	for j := start; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return nil, 0, false
		}
		q += j
		// A quote preceded by an odd number of backslashes is escaped.
		if trailingBackslashes(b[start:q])%2 == 0 {
			return b[start:q], q + 1, true
		}
		j = q + 1
	}
}

// skipValue skips the JSON value at b[i] and returns the index past it.
// Objects and arrays are skipped by bracket depth, with strings honoured but
// their inner syntax not checked: other members are not ours to validate.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		_, j, ok := scanString(b, i)
		return j, ok
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				_, j, ok := scanString(b, i)
				if !ok {
					return 0, false
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	}
	// Number or literal: up to the next delimiter.
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n', '"', '{', '[', ':':
			return j, j > i
		}
		j++
	}
	return j, j > i
}

// lineKind is what the framer needs to know about a physical line.
type lineKind uint8

const (
	kindMalformed lineKind = iota // a record of its own
	kindPartial                   // more of the same record follows
	kindFinal                     // ends its record
)

// classify recognizes one physical line (without its '\n'). Lines of an
// unknown format are each a record of their own.
func classify(format Format, line []byte) (lineKind, Stream) {
	switch format {
	case FormatCRI:
		l, ok := splitCRI(line)
		if !ok {
			return kindMalformed, StreamStdout
		}
		if l.tag == 'P' {
			return kindPartial, l.stream
		}
		return kindFinal, l.stream
	case FormatDocker:
		l, ok := scanDocker(line)
		if !ok {
			return kindMalformed, StreamStdout
		}
		if endsWithNewlineEscape(l.log) {
			return kindFinal, l.stream
		}
		return kindPartial, l.stream
	}
	return kindMalformed, StreamStdout
}
