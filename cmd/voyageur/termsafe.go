package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// termSafe returns s as it may reach a terminal: unchanged when every rune
// is printable, otherwise quoted like %q. Object keys (and errors naming
// them) come from whoever writes to the source; an ESC, BEL, CR or newline
// printed raw could retitle or clear the operator's terminal or forge a
// line. Machine outputs (--json, JSON logs) keep the exact bytes.
func termSafe(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}
