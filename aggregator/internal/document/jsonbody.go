package document

import "unicode/utf8"

// MaxDataDepth is how deeply objects and arrays of a JSON body may nest;
// deeper bodies stay text. It is below the index's mapping depth limit.
const MaxDataDepth = 16

// appendObject appends msg, a log line, as a JSON object if it is one: at
// most maxFields values (members and array elements at any depth, the object
// itself not counted) are kept, later ones are left out and truncated is set.
// Strings are copied with their escapes; invalid UTF-8 becomes U+FFFD. When
// msg is not exactly one JSON object (surrounding white space allowed), dst
// is returned unchanged with ok false: such a line stays text.
//
// It is a validating copier rather than a decoder so that a body costs no
// allocation: nothing is unescaped, nothing is built.
func appendObject(dst, msg []byte, maxFields int) (out []byte, ok, truncated bool) {
	p := bodyParser{in: msg, out: dst, budget: maxFields}
	p.space()
	if p.i >= len(p.in) || p.in[p.i] != '{' {
		return dst, false, false
	}
	if !p.value(0, true) {
		return dst, false, false
	}
	p.space()
	if p.i != len(p.in) {
		return dst, false, false
	}
	return p.out, true, p.truncated
}

type bodyParser struct {
	in        []byte
	i         int
	out       []byte
	budget    int // values still to be kept
	truncated bool
}

func (p *bodyParser) space() {
	for p.i < len(p.in) {
		switch p.in[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value parses one value at p.i, copying it to out when emit is set.
func (p *bodyParser) value(depth int, emit bool) bool {
	p.space()
	if p.i >= len(p.in) {
		return false
	}
	switch c := p.in[p.i]; {
	case c == '{':
		return p.object(depth+1, emit)
	case c == '[':
		return p.array(depth+1, emit)
	case c == '"':
		return p.str(emit)
	case c == 't':
		return p.literal("true", emit)
	case c == 'f':
		return p.literal("false", emit)
	case c == 'n':
		return p.literal("null", emit)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(emit)
	}
	return false
}

// take reports whether one more value may be kept, and spends it.
func (p *bodyParser) take() bool {
	if p.budget <= 0 {
		p.truncated = true
		return false
	}
	p.budget--
	return true
}

func (p *bodyParser) object(depth int, emit bool) bool {
	if depth > MaxDataDepth {
		return false
	}
	p.i++ // '{'
	if emit {
		p.out = append(p.out, '{')
	}
	p.space()
	if p.i < len(p.in) && p.in[p.i] == '}' {
		p.i++
		if emit {
			p.out = append(p.out, '}')
		}
		return true
	}
	kept := 0
	for {
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != '"' {
			return false
		}
		keep := emit && p.take()
		if keep {
			if kept > 0 {
				p.out = append(p.out, ',')
			}
			kept++
		}
		if !p.str(keep) {
			return false
		}
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != ':' {
			return false
		}
		p.i++
		if keep {
			p.out = append(p.out, ':')
		}
		if !p.value(depth, keep) {
			return false
		}
		p.space()
		if p.i >= len(p.in) {
			return false
		}
		switch p.in[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			if emit {
				p.out = append(p.out, '}')
			}
			return true
		default:
			return false
		}
	}
}

func (p *bodyParser) array(depth int, emit bool) bool {
	if depth > MaxDataDepth {
		return false
	}
	p.i++ // '['
	if emit {
		p.out = append(p.out, '[')
	}
	p.space()
	if p.i < len(p.in) && p.in[p.i] == ']' {
		p.i++
		if emit {
			p.out = append(p.out, ']')
		}
		return true
	}
	kept := 0
	for {
		keep := emit && p.take()
		if keep {
			if kept > 0 {
				p.out = append(p.out, ',')
			}
			kept++
		}
		if !p.value(depth, keep) {
			return false
		}
		p.space()
		if p.i >= len(p.in) {
			return false
		}
		switch p.in[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			if emit {
				p.out = append(p.out, ']')
			}
			return true
		default:
			return false
		}
	}
}

func (p *bodyParser) literal(lit string, emit bool) bool {
	if len(p.in)-p.i < len(lit) || string(p.in[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	if emit {
		p.out = append(p.out, lit...)
	}
	return true
}

func (p *bodyParser) number(emit bool) bool {
	start := p.i
	if p.in[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.in) && p.in[p.i] == '0':
		p.i++
	case p.i < len(p.in) && p.in[p.i] >= '1' && p.in[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.i < len(p.in) && p.in[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return false
		}
	}
	if p.i < len(p.in) && (p.in[p.i] == 'e' || p.in[p.i] == 'E') {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '+' || p.in[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return false
		}
	}
	if emit {
		p.out = append(p.out, p.in[start:p.i]...)
	}
	return true
}

func (p *bodyParser) digits() int {
	n := 0
	for p.i < len(p.in) && p.in[p.i] >= '0' && p.in[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// str copies a string with its escapes, repairing invalid UTF-8 and escaping
// U+2028/U+2029 as appendJSON does.
func (p *bodyParser) str(emit bool) bool {
	p.i++ // '"'
	if emit {
		p.out = append(p.out, '"')
	}
	start := p.i
	flush := func() {
		if emit {
			p.out = append(p.out, p.in[start:p.i]...)
		}
	}
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch {
		case c == '"':
			flush()
			p.i++
			if emit {
				p.out = append(p.out, '"')
			}
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.i+1 >= len(p.in) {
				return false
			}
			switch p.in[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.in) || !isHex(p.in[p.i+2]) || !isHex(p.in[p.i+3]) || !isHex(p.in[p.i+4]) || !isHex(p.in[p.i+5]) {
					return false
				}
				p.i += 6
			default:
				return false
			}
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.in[p.i:])
			switch {
			case r == utf8.RuneError && size == 1:
				flush()
				if emit {
					p.out = append(p.out, `\ufffd`...)
				}
				p.i++
				start = p.i
			case r == '\u2028' || r == '\u2029':
				flush()
				if emit {
					p.out = append(p.out, `\u202`...)
					p.out = append(p.out, hexDigits[r&0xf])
				}
				p.i += size
				start = p.i
			default:
				p.i += size
			}
		}
	}
	return false
}
