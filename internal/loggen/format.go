package loggen

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Format is the on-disk format of a container log file.
type Format int

const (
	// FormatCRI is the CRI logging format written by containerd and CRI-O:
	// "<time> <stream> <P|F> <message>\n".
	FormatCRI Format = iota
	// FormatDocker is Docker's json-file format:
	// {"log":"<message>\n","stream":"stdout","time":"<time>"}\n.
	FormatDocker
)

// DefaultSplitBytes is the default largest number of message bytes in one
// physical line, as containerd's max_container_log_line_size and Docker's
// 16 KiB copier buffer.
const DefaultSplitBytes = 16 * 1024

// criTimeLayout is the layout containerd and CRI-O write: RFC 3339 with
// exactly nine fractional digits (kubelet's timeFormatOut).
const criTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// dockerTimeLayout is the layout Docker's json-file driver writes.
const dockerTimeLayout = time.RFC3339Nano

// Sentinel errors returned by WriteLine.
var (
	// ErrStream means the stream is neither "stdout" nor "stderr".
	ErrStream = errors.New("loggen: stream must be stdout or stderr")
	// ErrNewline means the message contains '\n'. Runtimes split output at
	// newlines, so one logical line never contains one.
	ErrNewline = errors.New("loggen: message contains a newline")
)

// String returns "cri" or "docker".
func (f Format) String() string {
	switch f {
	case FormatCRI:
		return "cri"
	case FormatDocker:
		return "docker"
	default:
		return fmt.Sprintf("Format(%d)", int(f))
	}
}

// ParseFormat parses "cri" or "docker" (the names String returns).
func ParseFormat(s string) (Format, error) {
	switch s {
	case "cri":
		return FormatCRI, nil
	case "docker":
		return FormatDocker, nil
	default:
		return 0, fmt.Errorf("loggen: unknown format %q (want cri or docker)", s)
	}
}

// partEnd returns the end of the physical part of msg that starts at off,
// given at most split bytes per part.
//
// CRI parts are cut on bytes, as containerd does: a UTF-8 sequence may be
// split between two parts. Docker parts end on a UTF-8 boundary where
// possible, so that every part is valid UTF-8 and survives JSON encoding; a
// real Docker daemon cuts on bytes and writes U+FFFD for the broken halves,
// which would make the written text unknowable to tests.
func partEnd(msg string, off, split int, format Format) int {
	end := off + split
	if end >= len(msg) {
		return len(msg)
	}
	if format == FormatDocker {
		e := end
		for e > off && e > end-utf8.UTFMax && !utf8.RuneStart(msg[e]) {
			e--
		}
		if e > off && utf8.RuneStart(msg[e]) {
			end = e
		}
	}
	return end
}

// appendCRI appends one CRI physical line.
func appendCRI(dst []byte, t time.Time, stream string, partial bool, part string) []byte {
	dst = t.AppendFormat(dst, criTimeLayout)
	dst = append(dst, ' ')
	dst = append(dst, stream...)
	if partial {
		dst = append(dst, " P "...)
	} else {
		dst = append(dst, " F "...)
	}
	dst = append(dst, part...)
	return append(dst, '\n')
}

// appendDocker appends one json-file physical line. A part that is not the
// last of its message has no trailing "\n" in its log value.
func appendDocker(dst []byte, t time.Time, stream string, partial bool, part string) []byte {
	dst = append(dst, `{"log":"`...)
	dst = appendJSONStringBody(dst, part)
	if !partial {
		dst = append(dst, `\n`...)
	}
	dst = append(dst, `","stream":"`...)
	dst = append(dst, stream...)
	dst = append(dst, `","time":"`...)
	dst = t.AppendFormat(dst, dockerTimeLayout)
	return append(dst, "\"}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, quotes included.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringBody(dst, s)
	return append(dst, '"')
}

// appendJSONStringBody appends s escaped exactly as encoding/json does with
// SetEscapeHTML(false): '"' and '\\' escaped, control characters as \b, \f,
// \n, \r, \t or \u00XX, U+2028 and U+2029 as \u2028 and \u2029, invalid
// UTF-8 replaced by \ufffd; '<', '>' and '&' kept as they are (Docker does
// not HTML-escape).
func appendJSONStringBody(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
