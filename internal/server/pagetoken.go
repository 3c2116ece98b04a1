package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// pageToken binds page tokens to the request that produced them. A token carries the offset of
// the next page, a fingerprint of the request (every field but page_size and page_token, so a
// client may change its page size while paging) and a checksum. Tokens are stateless, so any
// replica can serve the next page. They are integrity-checked, not secret: forging one only lets
// a client ask for an offset it could reach by paging. A token also names the ranking it came
// from (the embedding model and its prefixes, or lexical), so a page of another ranking is
// refused rather than mixed in: the same offset would skip or repeat papers.
type pageToken struct{ fingerprint, ranking [8]byte }

// pageTokenVersion 2 added the ranking; version 1 tokens are refused with a reason.
const pageTokenVersion = 2

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func newPageToken(req *recommenderv1.RecommendRequest, ranking string) pageToken {
	c := proto.Clone(req).(*recommenderv1.RecommendRequest)
	c.PageToken, c.PageSize = "", 0
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(b)
	var t pageToken
	copy(t.fingerprint[:], sum[:])
	rs := sha256.Sum256([]byte(ranking))
	copy(t.ranking[:], rs[:])
	return t
}

func (t pageToken) encode(offset int) string {
	b := []byte{pageTokenVersion}
	b = append(b, t.fingerprint[:]...)
	b = append(b, t.ranking[:]...)
	b = binary.AppendUvarint(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	errTokenMalformed = errors.New("is not a valid page token")
	errTokenOther     = errors.New("was issued for a different request")
	errTokenOld       = errors.New("was issued by an earlier version of the service: start again from the first page")
	errTokenRanking   = errors.New("was issued when the service ranked with another embedding model (or other prefixes): " +
		"the order has changed, so start again from the first page")
)

// decode returns the offset a token points at.
func (t pageToken) decode(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1+8+1+4 {
		return 0, errTokenMalformed
	}
	body, sum := b[:len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(sum) {
		return 0, errTokenMalformed
	}
	switch {
	case body[0] == 1:
		return 0, errTokenOld
	case body[0] != pageTokenVersion || len(body) < 1+8+8+1:
		return 0, errTokenMalformed
	case !bytes.Equal(body[1:9], t.fingerprint[:]):
		return 0, errTokenOther
	case !bytes.Equal(body[9:17], t.ranking[:]):
		return 0, errTokenRanking
	}
	off, n := binary.Uvarint(body[17:])
	if n <= 0 || 17+n != len(body) || off == 0 || off >= MaxResults {
		return 0, errTokenMalformed
	}
	return int(off), nil
}
