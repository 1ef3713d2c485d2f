package cri

import "bytes"

// Record is one logical log record as found in the file.
type Record struct {
	Offset     uint64 // file offset of the record's first byte
	NextOffset uint64 // file offset just past the newline that ends the record (where the next record starts)
	// Data is the record's raw physical lines joined by '\n', without the
	// final newline; at most the framer's limit. Valid until the next call of
	// Write, Next, Flush or Reset.
	Data  []byte
	Lines int // physical lines in the record, including any skipped by truncation
	// Truncated: Data was cut to the limit (the record's bytes up to
	// NextOffset were consumed all the same), or the record never got its
	// final part (see Flush).
	Truncated bool
}

// Framer cuts the bytes of a container log file into records.
// Feed it with Write and call Next until it returns false after each Write:
// the framer holds the bytes written since. It is not safe for concurrent use.
type Framer struct {
	format Format
	max    int // record size limit

	in    []byte // bytes written and not yet consumed (plus consumed ones until the next compaction)
	inOff uint64 // file offset of in[0]
	pos   int    // start of the next unconsumed physical line in `in`
	scan  int    // bytes after pos already searched for '\n' in vain
	done  uint64 // NextOffset of the last record returned

	// The record being assembled. It is open while its last line was
	// partial: the next line decides whether it goes on. Until it is
	// truncated its lines stay in `in` (contiguous, so Data aliases `in`);
	// once truncated, its kept bytes live in trunc and later lines are
	// consumed without being kept.
	open      bool
	recOff    uint64
	recStart  int // index of the record's first byte in `in` (until truncated)
	recEnd    int // index just past its last kept line in `in` (until truncated)
	lines     int
	stream    Stream
	truncated bool
	trunc     []byte

	// Discarding the rest of an over-long physical line, which already
	// belongs to the current record; skipFinal says it ends the record.
	skipLine  bool
	skipFinal bool
}

// NewFramer returns a framer for format whose records hold at most
// maxRecordBytes bytes of Data. offset is the file offset of the first byte
// that will be written. With FormatUnknown, every physical line is a record.
func NewFramer(format Format, maxRecordBytes int, offset uint64) *Framer {
	if maxRecordBytes <= 0 {
		panic("BUG: cri.NewFramer: maxRecordBytes must be positive")
	}
	return &Framer{format: format, max: maxRecordBytes, inOff: offset, done: offset}
}

// keepBufCap is the largest buffer a framer keeps once it is no longer
// needed: a forwarder has a framer per file, and one long record in each must
// not pin a limit's worth of memory per file.
const keepBufCap = 256 << 10

// Write feeds the next bytes of the file. It copies what it must keep.
func (f *Framer) Write(p []byte) {
	f.release()
	if f.skipLine && f.pos == len(f.in) {
		// The middle of an over-long line: count it, don't copy it.
		f.inOff += uint64(len(f.in))
		f.in, f.pos, f.scan = f.in[:0], 0, 0
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			i = len(p)
		}
		f.inOff += uint64(i)
		p = p[i:]
	}
	if len(p) == 0 {
		return
	}
	if cap(f.in)-len(f.in) < len(p) {
		f.compact()
	}
	if cap(f.in) > keepBufCap && len(f.in)+len(p) <= keepBufCap/2 {
		f.compact()
		f.in = append(make([]byte, 0, keepBufCap/2), f.in...)
	}
	f.in = append(f.in, p...)
}

// release drops the buffer of truncated records once it is large and no
// record uses it.
func (f *Framer) release() {
	if !f.truncated && cap(f.trunc) > keepBufCap {
		f.trunc = nil
	}
}

// compact moves the bytes still needed to the front of `in`, so that the
// buffer only grows with what is pending, not with what went through it.
func (f *Framer) compact() {
	keep := f.pos
	if f.open && !f.truncated {
		keep = f.recStart
	}
	if keep == 0 {
		return
	}
	n := copy(f.in, f.in[keep:])
	f.in = f.in[:n]
	f.inOff += uint64(keep)
	f.pos -= keep
	f.recStart -= keep
	f.recEnd -= keep
}

// Next returns the next complete record, if any.
func (f *Framer) Next() (Record, bool) {
	f.release()
	for {
		if f.skipLine {
			i := bytes.IndexByte(f.in[f.pos:], '\n')
			if i < 0 {
				f.pos = len(f.in)
				return Record{}, false
			}
			f.pos += i + 1
			f.skipLine = false
			if f.skipFinal {
				return f.emit(), true
			}
			continue
		}

		i := bytes.IndexByte(f.in[f.pos+f.scan:], '\n')
		if i < 0 {
			// No complete line. Wait for it unless it is already over the
			// limit (and, for CRI, long enough to show its header).
			f.scan = len(f.in) - f.pos
			if f.scan > f.max && (f.format != FormatCRI || f.scan >= criHeaderLen) {
				if r, ok := f.overlong(f.in[f.pos:]); ok {
					return r, true
				}
				continue
			}
			return Record{}, false
		}
		end := f.pos + f.scan + i
		f.scan = 0
		line := f.in[f.pos:end]
		if len(line) > f.max {
			if r, ok := f.overlong(line); ok {
				return r, true
			}
			continue
		}

		kind, stream := classify(f.format, line)
		if f.open {
			if kind == kindMalformed || stream != f.stream {
				// The partial sequence ends here; this line is looked at
				// again on the next call.
				return f.emit(), true
			}
			f.lines++
			if !f.truncated {
				if end-f.recStart > f.max {
					f.truncate()
				} else {
					f.recEnd = end
				}
			}
			f.pos = end + 1
			if kind == kindFinal {
				return f.emit(), true
			}
			continue
		}
		f.start(stream)
		f.recEnd = end
		f.pos = end + 1
		if kind == kindPartial {
			f.open = true
			continue
		}
		return f.emit(), true
	}
}

// overlong handles a physical line longer than the limit, given at least its
// first max+1 bytes (all of it, or up to the end of what was written). The
// decision must depend only on what every caller sees: line[:max], and for
// CRI the header (line[:criHeaderLen]). It either returns the open record,
// which this line does not continue, or takes the line into the current
// record and arranges to skip the rest of it.
func (f *Framer) overlong(line []byte) (Record, bool) {
	// Only a CRI header can be read from a prefix; see the package
	// documentation for docker.
	kind, stream := kindMalformed, StreamStdout
	if f.format == FormatCRI {
		kind, stream = classify(FormatCRI, line)
	}
	if f.open && (kind == kindMalformed || stream != f.stream) {
		return f.emit(), true
	}
	if f.open {
		f.lines++
		if !f.truncated {
			f.truncate()
		}
	} else {
		f.start(stream)
		f.trunc = append(f.trunc[:0], line[:f.max]...)
		f.truncated = true
	}
	f.open = kind == kindPartial
	f.skipLine, f.skipFinal = true, kind != kindPartial
	f.pos += len(line)
	f.scan = 0
	return Record{}, false
}

func (f *Framer) start(stream Stream) {
	f.recOff = f.inOff + uint64(f.pos)
	f.recStart = f.pos
	f.lines = 1
	f.stream = stream
	f.truncated = false
}

// truncate moves the open record's kept lines out of `in`, so that the rest
// of the record can be consumed without being kept.
func (f *Framer) truncate() {
	f.trunc = append(f.trunc[:0], f.in[f.recStart:f.recEnd]...)
	f.truncated = true
}

// emit returns the current record, which ends at pos.
func (f *Framer) emit() Record {
	r := Record{
		Offset:     f.recOff,
		NextOffset: f.inOff + uint64(f.pos),
		Lines:      f.lines,
		Truncated:  f.truncated,
	}
	if f.truncated {
		r.Data = f.trunc
	} else {
		r.Data = f.in[f.recStart:f.recEnd:f.recEnd]
	}
	f.done = r.NextOffset
	f.open, f.truncated, f.lines = false, false, 0
	return r
}

// Flush returns the open record, flagged Truncated, if every physical line of
// it is complete: a partial sequence whose final part will never come because
// its file ended for good (a container killed mid-line, its file rotated away
// and deleted). Its Data is what was kept, at most the limit; its NextOffset
// is just past its last line. Bytes written after that line (an unfinished
// line) stay in the framer. Call it when Next returned false; it returns false
// when no record is open or its last line is still unfinished (an over-long
// line whose end was not written).
func (f *Framer) Flush() (Record, bool) {
	if !f.open || f.skipLine {
		return Record{}, false
	}
	r := f.emit()
	r.Truncated = true
	return r, true
}

// Offset returns the NextOffset of the last record returned by Next or Flush
// (or the starting offset): where to resume reading after a restart.
func (f *Framer) Offset() uint64 { return f.done }

// Buffered returns how many bytes the framer holds that do not yet form a
// complete record. Skipped bytes of a truncated record are not held.
func (f *Framer) Buffered() int {
	n := len(f.in) - f.pos
	if f.open && !f.truncated {
		n = len(f.in) - f.recStart
	}
	if f.truncated {
		n += len(f.trunc)
	}
	return n
}

// Trim drops the framer's buffers if it holds nothing pending. A forwarder
// has a framer for every file it follows; calling Trim when a file is read
// to its end makes idle files cost no buffer memory.
func (f *Framer) Trim() {
	if f.open || f.skipLine || f.Buffered() != 0 {
		return
	}
	f.compact()
	if len(f.in) == 0 {
		f.in, f.scan = nil, 0
	}
	if !f.truncated {
		f.trunc = nil
	}
}

// Reset forgets everything; the next byte written is at offset. Used when the
// file was truncated or replaced. Small buffers are kept for reuse.
func (f *Framer) Reset(offset uint64) {
	in, trunc := f.in[:0], f.trunc[:0]
	if cap(in) > keepBufCap {
		in = nil
	}
	if cap(trunc) > keepBufCap {
		trunc = nil
	}
	*f = Framer{format: f.format, max: f.max, in: in, trunc: trunc, inOff: offset, done: offset}
}
