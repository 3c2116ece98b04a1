package embed

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PaperText is the text embedded for a paper: the title, a blank line, the abstract. Titles
// carry the topic densely and abstracts the detail; both are what SPECTER-style paper encoders
// are trained on.
func PaperText(title, abstract string) string {
	switch {
	case title == "":
		return abstract
	case abstract == "":
		return title
	}
	return title + "\n\n" + abstract
}

// TextHash identifies embedded text, so an unchanged paper keeps its vector without an API call.
func TextHash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:16])
}

// bytesPerToken is the conservative ratio used to estimate tokens without a tokenizer: English
// averages about 4 bytes per token with OpenAI's tokenizers, so 3 over-estimates for nearly all
// text, and an over-estimate only makes batches a little smaller.
const bytesPerToken = 3

// EstimateTokens estimates the tokens of text.
func EstimateTokens(text string) int { return (len(text) + bytesPerToken - 1) / bytesPerToken }

// truncate cuts text to at most maxTokens estimated tokens, at a word boundary when there is one.
func truncate(text string, maxTokens int) (string, bool) {
	limit := maxTokens * bytesPerToken
	if len(text) <= limit {
		return text, false
	}
	cut := text[:limit]
	if r, _ := utf8.DecodeRuneInString(text[limit:]); !unicode.IsSpace(r) { // mid-word: back up
		if i := strings.LastIndexFunc(cut, unicode.IsSpace); i > 0 {
			cut = cut[:i]
		}
	}
	// Do not split a UTF-8 sequence when there was no space to cut at.
	if i := len(cut) - 1; i >= 0 {
		for i > 0 && !utf8.RuneStart(cut[i]) {
			i--
		}
		if !utf8.FullRuneInString(cut[i:]) {
			cut = cut[:i]
		}
	}
	return strings.TrimRightFunc(cut, unicode.IsSpace), true
}
