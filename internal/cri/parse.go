package cri

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Entry is a parsed record.
type Entry struct {
	Time    time.Time // of the record's first line, in UTC
	RawTime []byte    // the timestamp as written in the file (for docker, the JSON string's raw bytes)
	Stream  Stream
	// Message is the logged line: the messages of partial lines joined (for
	// docker, decoded and without the final "\n"), a single trailing '\r'
	// removed. It aliases the data or the buffer given to ParseRecord.
	Message []byte
}

// ErrMalformed is wrapped by the errors of ParseRecord for data that is not a
// record of its format.
var ErrMalformed = errors.New("malformed log record")

// Static errors: the malformed path must not allocate either, bad input can
// be a flood.
var (
	errUnknownFormat = fmt.Errorf("%w: unknown log format", ErrMalformed)
	errCRILine       = fmt.Errorf("%w: not a CRI line", ErrMalformed)
	errDockerLine    = fmt.Errorf("%w: not a docker json-file line", ErrMalformed)
	errTime          = fmt.Errorf("%w: bad timestamp", ErrMalformed)
	errJSONString    = fmt.Errorf("%w: bad escape in JSON string", ErrMalformed)
)

// ParseRecord parses a record's Data (one or more physical lines joined by
// '\n', as framed by Framer). Where the message must be copied or decoded it
// is appended to buf[:0]; the possibly grown buffer is returned for reuse.
// Otherwise Message aliases data.
//
// On data it cannot parse it returns an Entry with the raw data as Message
// (minus a trailing '\r'), StreamStdout and a zero Time, and an error
// wrapping ErrMalformed: callers keep such records, flagged.
func ParseRecord(format Format, data []byte, buf []byte) (Entry, []byte, error) {
	var e Entry
	var err error
	switch format {
	case FormatCRI:
		e, buf, err = parseCRI(data, buf)
	case FormatDocker:
		e, buf, err = parseDocker(data, buf)
	default:
		err = errUnknownFormat
	}
	if err != nil {
		return Entry{Message: trimCR(data)}, buf, err
	}
	e.Message = trimCR(e.Message)
	return e, buf, nil
}

func parseCRI(data, buf []byte) (Entry, []byte, error) {
	line, rest, more := cutLine(data)
	l, ok := splitCRI(line)
	if !ok {
		return Entry{}, buf, errCRILine
	}
	t, ok := parseTime(l.time)
	if !ok {
		return Entry{}, buf, errTime
	}
	e := Entry{Time: t, RawTime: l.time, Stream: l.stream, Message: l.msg}
	if !more {
		return e, buf, nil
	}
	buf = append(buf[:0], l.msg...)
	for more {
		line, rest, more = cutLine(rest)
		if l, ok = splitCRI(line); !ok {
			return Entry{}, buf, errCRILine
		}
		buf = append(buf, l.msg...)
	}
	e.Message = buf
	return e, buf, nil
}

func parseDocker(data, buf []byte) (Entry, []byte, error) {
	line, rest, more := cutLine(data)
	l, ok := scanDocker(line)
	if !ok {
		return Entry{}, buf, errDockerLine
	}
	t, ok := parseTime(l.time)
	if !ok {
		return Entry{}, buf, errTime
	}
	e := Entry{Time: t, RawTime: l.time, Stream: l.stream}
	if !more {
		// Common case: nothing to decode but the final "\n".
		switch i := bytes.IndexByte(l.log, '\\'); {
		case i < 0:
			e.Message = l.log
			return e, buf, nil
		case i == len(l.log)-2 && l.log[i+1] == 'n':
			e.Message = l.log[:i]
			return e, buf, nil
		}
	}
	if buf, ok = decodeJSONString(buf[:0], l.log); !ok {
		return Entry{}, buf, errJSONString
	}
	for more {
		line, rest, more = cutLine(rest)
		if l, ok = scanDocker(line); !ok {
			return Entry{}, buf, errDockerLine
		}
		if buf, ok = decodeJSONString(buf, l.log); !ok {
			return Entry{}, buf, errJSONString
		}
	}
	e.Message = bytes.TrimSuffix(buf, []byte("\n"))
	return e, buf, nil
}

// cutLine returns the first line of data, the rest, and whether there was a
// rest (data had a '\n').
func cutLine(data []byte) (line, rest []byte, more bool) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i], data[i+1:], true
	}
	return data, nil, false
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// decodeJSONString appends the decoded contents of a raw JSON string to dst.
// Lone surrogates become U+FFFD (as in encoding/json); other bytes, invalid
// UTF-8 included, are copied as they are: repair is the document encoder's job.
func decodeJSONString(dst, raw []byte) ([]byte, bool) {
	for {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...), true
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		if len(raw) < 2 {
			return dst, false
		}
		c := raw[1]
		raw = raw[2:]
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw)
			if !ok {
				return dst, false
			}
			raw = raw[4:]
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by an escaped low one;
				// if it is not, the next escape is decoded on its own.
				r2, ok := rune(-1), false
				if len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' {
					r2, ok = hex4(raw[2:])
				}
				if r = utf16.DecodeRune(r, r2); ok && r != utf8.RuneError {
					raw = raw[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// parseTime parses an RFC 3339 time. The shape runtimes write,
// "2006-01-02T15:04:05.999999999Z", is parsed by hand: time.Parse needs a
// string, and converting the bytes would allocate on every line.
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := parseTimeUTC(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parseTimeUTC parses "YYYY-MM-DDTHH:MM:SS[.F{1,9}]Z" and reports false for
// anything else, which parseTime then hands to time.Parse.
func parseTimeUTC(b []byte) (time.Time, bool) {
	n := len(b)
	if n < 20 || n > 30 || !looksLikeTime(b) || b[n-1] != 'Z' {
		return time.Time{}, false
	}
	nsec := 0
	switch {
	case n == 20:
	case b[19] == '.' && n >= 22:
		for _, c := range b[20 : n-1] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			nsec = nsec*10 + int(c-'0')
		}
		for range 30 - n { // scale to nanoseconds: 9 digits end at n == 30
			nsec *= 10
		}
	default:
		return time.Time{}, false
	}
	year := num(b[0:4])
	month := time.Month(num(b[5:7]))
	day, hour, minute, sec := num(b[8:10]), num(b[11:13]), num(b[14:16]), num(b[17:19])
	if month < time.January || month > time.December || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, month, day, hour, minute, sec, nsec, time.UTC), true
}

// num converts digits already checked by looksLikeTime.
func num(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
