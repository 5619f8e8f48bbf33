package canbus

import (
	"os"
	"strings"
	"testing"
)

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block is a fenced code block of a Markdown document, with its tag (the
// text after the fence and prefix, "door/tap") and its first line number.
type block struct {
	tag  string
	line int
	body []string
}

// payloads returns the block's payloads: the whole block when it starts
// with "{", else one per non-empty line.
func (b block) payloads() []string {
	if len(b.body) > 0 && b.body[0] == "{" {
		return []string{strings.Join(b.body, "\n")}
	}
	var out []string
	for _, l := range b.body {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// taggedBlocks returns the fenced blocks of doc opened by "```"+prefix.
func taggedBlocks(doc, prefix string) []block {
	var out []block
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		tag, ok := strings.CutPrefix(lines[i], "```"+prefix)
		if !ok {
			continue
		}
		b := block{tag: strings.TrimSpace(tag), line: i + 1}
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			b.body = append(b.body, lines[i])
		}
		out = append(out, b)
	}
	return out
}
