package config

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps every key path of a TOML document to its 1-based line, with
// array-of-tables elements indexed: "route[1].upstream", "listener[0].tls".
// It lets validation errors, found on decoded structs, point at the line.
func keyLines(doc []byte) map[string]int {
	lines := make(map[string]int)
	var p unstable.Parser
	p.Reset(doc)
	counts := make(map[string]int) // array table path → elements seen
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first := keyParts(e.Key())
			path := resolve(counts, parts)
			if e.Kind == unstable.ArrayTable {
				n := counts[path]
				counts[path] = n + 1
				path += "[" + strconv.Itoa(n) + "]"
			}
			table = path
			if l := lineOf(doc, first); l > 0 {
				lines[table] = l
			}
		case unstable.KeyValue:
			parts, first := keyParts(e.Key())
			path := strings.Join(parts, ".")
			if table != "" {
				path = table + "." + path
			}
			if l := lineOf(doc, first); l > 0 {
				lines[path] = l
			}
		}
	}
	return lines
}

// resolve turns a table header's parts into a path whose array-table
// components carry the current index, so [route.auth] after the second
// [[route]] becomes "route[1].auth".
func resolve(counts map[string]int, parts []string) string {
	path := ""
	for i, part := range parts {
		if i > 0 {
			path += "."
		}
		path += part
		if n, ok := counts[path]; ok && i < len(parts)-1 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return path
}

func keyParts(it unstable.Iterator) (parts []string, first []byte) {
	for it.Next() {
		n := it.Node()
		if first == nil {
			first = n.Data
		}
		parts = append(parts, string(n.Data))
	}
	return parts, first
}

// lineOf returns the line of b when b is a subslice of doc, else 0.
func lineOf(doc, b []byte) int {
	if len(b) == 0 {
		return 0
	}
	off := cap(doc) - cap(b)
	if off < 0 || off > len(doc) {
		return 0
	}
	return bytes.Count(doc[:off], []byte{'\n'}) + 1
}

// lineFor finds the line of path or of its closest enclosing key.
func lineFor(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
