package validate

import "encoding/json"

// jsonResult is the outcome of checking a JSON body.
type jsonResult int

const (
	jsonOK jsonResult = iota
	jsonTooDeep
	jsonMalformed
)

// checkJSON reports whether b is one well-formed JSON value nested at most
// maxDepth levels (0: no depth limit). The depth scan runs first and stops at
// the first level too deep, so a nesting bomb costs no more than its prefix;
// json.Valid then checks well-formedness without building values.
func checkJSON(b []byte, maxDepth int) jsonResult {
	if maxDepth > 0 && !withinDepth(b, maxDepth) {
		return jsonTooDeep
	}
	if !json.Valid(b) {
		return jsonMalformed
	}
	return jsonOK
}

// withinDepth counts object and array nesting outside string literals. On
// malformed input its answer only matters when it is false, and then the body
// is rejected either way.
func withinDepth(b []byte, maxDepth int) bool {
	depth := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}
