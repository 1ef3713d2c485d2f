package cri

import (
	"bytes"
	"fmt"
)

// Format is the layout of a container log file.
type Format uint8

const (
	FormatUnknown Format = iota
	FormatCRI            // containerd, CRI-O
	FormatDocker         // docker json-file
)

func (f Format) String() string {
	switch f {
	case FormatCRI:
		return "cri"
	case FormatDocker:
		return "docker"
	}
	return "unknown"
}

// ParseFormat is the inverse of Format.String for the known formats.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "cri":
		return FormatCRI, nil
	case "docker":
		return FormatDocker, nil
	}
	return FormatUnknown, fmt.Errorf("unknown log format %q: want cri or docker", s)
}

// DetectFormat decides from the first bytes of a file: a line starting with
// '{' is docker, one starting with an RFC 3339 time and a space is CRI.
// It returns FormatUnknown when firstLine is neither, or too short to tell
// (call again with more bytes).
func DetectFormat(firstLine []byte) Format {
	if i := bytes.IndexByte(firstLine, '\n'); i >= 0 {
		firstLine = firstLine[:i]
	}
	if len(firstLine) > 0 && firstLine[0] == '{' {
		return FormatDocker
	}
	if sp := bytes.IndexByte(firstLine, ' '); sp >= 0 && looksLikeTime(firstLine[:sp]) {
		return FormatCRI
	}
	return FormatUnknown
}

// Stream is the output stream a line was written to.
type Stream uint8

const (
	StreamStdout Stream = iota
	StreamStderr
)

func (s Stream) String() string {
	if s == StreamStderr {
		return "stderr"
	}
	return "stdout"
}
