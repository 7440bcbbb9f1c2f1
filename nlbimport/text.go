package nlbimport

import (
	"fmt"
	"strings"
	"unicode"
)

// Everything an export supplies reaches the written file, and the
// messages on standard error, through show or tomlString: a node name
// with a newline and a table header in it once added a backend of its
// own choosing to the config (issue 33, finding 9).

// show writes a value an export supplied so that it reads as itself
// wherever it goes, comments included: as it is when it is a plain name
// or number, otherwise as a TOML basic string, which holds no line break
// or control character and so ends neither a comment nor a line.
func show(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool { return !plainRune(c) }) < 0 {
		return s
	}
	return tomlString(s)
}

func plainRune(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-:", c)
}

// tomlString quotes s as a TOML basic string: quote and backslash
// escaped, every character that does not print (line breaks, controls,
// format characters) as a \u escape, and bytes that are not UTF-8 as
// U+FFFD, so that the file stays UTF-8 as TOML requires.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c > 0xffff && !unicode.IsPrint(c):
			fmt.Fprintf(&b, `\U%08X`, c)
		case !unicode.IsPrint(c):
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
