package eval

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSentences bounds the sentences of one paper (its title included): a long abstract's tail
// adds vectors, not matches.
const MaxSentences = 16

// minSentence is the shortest sentence kept on its own, in bytes; a shorter one ("Results
// follow.") joins the one before, since alone its vector says little.
const minSentence = 24

// abbreviations end in a period without ending a sentence.
var abbreviations = []string{"e.g.", "i.e.", "al.", "etc.", "vs.", "fig.", "figs.", "eq.", "eqs.", "cf.", "approx.", "resp.", "sec.", "ref.", "no."}

// Sentences splits a paper into the texts a sentence-level strategy embeds: the title, then the
// abstract's sentences, at most MaxSentences in all. A sentence ends at '.', '!' or '?' followed
// by a space and a capital letter, a digit or an opening bracket or quote, unless the word
// before is an abbreviation.
func Sentences(title, abstract string) []string {
	var out []string
	if t := strings.TrimSpace(title); t != "" {
		out = append(out, t)
	}
	text := strings.Join(strings.Fields(abstract), " ")
	start := 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c != '.' && c != '!' && c != '?' || i+2 >= len(text) || text[i+1] != ' ' {
			continue
		}
		next, _ := utf8.DecodeRuneInString(text[i+2:])
		if !unicode.IsUpper(next) && !unicode.IsDigit(next) && !strings.ContainsRune("([\"'", next) {
			continue
		}
		if c == '.' && isAbbreviation(text[start:i+1]) {
			continue
		}
		out = appendSentence(out, text[start:i+1], len(out) > 0 && title != "" && len(out) == 1)
		start = i + 2
	}
	if start < len(text) {
		out = appendSentence(out, text[start:], len(out) > 0 && title != "" && len(out) == 1)
	}
	if len(out) > MaxSentences {
		out = out[:MaxSentences]
	}
	return out
}

// appendSentence adds s, or joins it to the last sentence when it is too short to stand alone
// (never to the title, which stays as written).
func appendSentence(out []string, s string, lastIsTitle bool) []string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return out
	case len(s) < minSentence && len(out) > 0 && !lastIsTitle:
		out[len(out)-1] += " " + s
		return out
	}
	return append(out, s)
}

func isAbbreviation(upToPeriod string) bool {
	word := upToPeriod[strings.LastIndexByte(upToPeriod, ' ')+1:]
	word = strings.TrimLeft(word, "([\"'")
	if len(word) == 2 && unicode.IsUpper(rune(word[0])) { // an initial: "J. Smith"
		return true
	}
	lower := strings.ToLower(word)
	for _, a := range abbreviations {
		if lower == a {
			return true
		}
	}
	return false
}
