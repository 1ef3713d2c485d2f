// Package cri frames and parses the log files that container runtimes write
// under /var/log/pods: the CRI format of containerd and CRI-O, and Docker's
// json-file format.
//
// The forwarder uses a [Framer] to cut a file's bytes into logical records
// without interpreting their content; the aggregator uses [ParseRecord] to
// turn a record into an [Entry] (time, stream, message).
//
// # Records
//
// A runtime splits a long line into several physical lines: CRI tags every
// piece but the last "P" (partial) and the last "F" (full); docker leaves the
// trailing "\n" off the "log" value of every piece but the last. A record is
// one logical line: one or more physical lines, joined by '\n' exactly as they
// are in the file. A partial sequence also ends, as a record of its own, when
// the next line is malformed or belongs to the other stream.
//
// # Invariants
//
//   - Every byte of the input belongs to exactly one record, in order: the
//     first record starts at the offset given to [NewFramer] or [Framer.Reset],
//     and each record starts at the previous record's NextOffset. Checkpointing
//     [Framer.Offset] therefore resumes at a record boundary.
//   - A line that is not in the expected format is a record of its own, so bad
//     input never swallows good lines; [ParseRecord] returns it raw with an
//     error wrapping [ErrMalformed].
//   - Memory is bounded by the record size limit, not by the input: Data never
//     exceeds it; longer records are cut (Truncated) and the rest of their
//     bytes are skipped without being buffered. A line without its newline yet
//     is never emitted.
//   - The same bytes give the same records however they are split across
//     calls to Write.
//   - In steady state neither framing nor parsing allocates: buffers are reused
//     and results alias them (see the validity rules on Record.Data and
//     Entry.Message).
//
// # Choices and known limitations
//
//   - CRI lines without a tag field (old CRI-O: "<time> <stream> <message>") are
//     accepted as final lines. The third field is taken as the tag only if it
//     is exactly "P" or "F" followed by a space, the end of the line, or "\r"
//     and the end of the line; so an untagged message that starts with "P " is
//     read as a partial line. The format is ambiguous there; tagged runtimes are
//     the norm.
//   - The framer checks the shape of a CRI timestamp, not its value; a record
//     with an impossible time is framed normally and reported malformed by
//     ParseRecord.
//   - A physical line longer than the record limit is classified from its
//     first bytes only. For CRI the header is there, so such a line still
//     joins its partial sequence. A docker line's stream and final "\n" are
//     only known at its end, so an over-long docker line is a record of its
//     own (Truncated) and ParseRecord reports the cut JSON as malformed. Docker
//     writes at most 16 KiB of message per line, so this needs a record limit
//     below ~100 KiB or a broken file.
//   - A partial sequence at the end of the written bytes is held until the next
//     line shows whether it goes on. A file that ends in a "P" line (a
//     container killed mid-line) keeps its last record pending until
//     [Framer.Flush], called once the file is known to be finished, emits it
//     flagged Truncated.
//   - While a record is being assembled, up to about twice the limit can be
//     held: the record's kept lines plus an incomplete next line that is not
//     yet known to belong to it.
package cri
