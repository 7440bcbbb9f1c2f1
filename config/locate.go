package config

import "strings"

// locate maps each table header and key path in a TOML source to the line
// that names it, for error messages. The TOML library keeps key positions
// to itself, so this reads the plain shapes stickylb's files use
// ([a.b.c] headers and key = value lines); anything it does not recognise
// just has no line.
func locate(src []byte) map[string]int {
	lines := map[string]int{}
	table := ""
	for i, line := range strings.Split(string(src), "\n") {
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			end := strings.LastIndexByte(s, ']')
			if end < 0 {
				continue
			}
			table = dotted(strings.Trim(s[:end+1], "[]"))
			if _, ok := lines[table]; !ok {
				lines[table] = i + 1
			}
			continue
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			continue
		}
		path := dotted(s[:eq])
		if table != "" {
			path = table + "." + path
		}
		if _, ok := lines[path]; !ok {
			lines[path] = i + 1
		}
	}
	return lines
}

// dotted normalises a TOML key (a . "b c" . d) to a.b c.d.
func dotted(key string) string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c != ' ' && c != '\t':
			cur.WriteByte(c)
		}
	}
	parts = append(parts, strings.TrimSpace(cur.String()))
	return strings.Join(parts, ".")
}
