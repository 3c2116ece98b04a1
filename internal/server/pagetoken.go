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
// a client ask for an offset it could reach by paging.
type pageToken struct{ fingerprint [8]byte }

const pageTokenVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func newPageToken(req *recommenderv1.RecommendRequest) pageToken {
	c := proto.Clone(req).(*recommenderv1.RecommendRequest)
	c.PageToken, c.PageSize = "", 0
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(b)
	var t pageToken
	copy(t.fingerprint[:], sum[:])
	return t
}

func (t pageToken) encode(offset int) string {
	b := []byte{pageTokenVersion}
	b = append(b, t.fingerprint[:]...)
	b = binary.AppendUvarint(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	errTokenMalformed = errors.New("is not a valid page token")
	errTokenOther     = errors.New("was issued for a different request")
)

// decode returns the offset a token points at.
func (t pageToken) decode(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1+8+1+4 || b[0] != pageTokenVersion {
		return 0, errTokenMalformed
	}
	body, sum := b[:len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(sum) {
		return 0, errTokenMalformed
	}
	if !bytes.Equal(body[1:9], t.fingerprint[:]) {
		return 0, errTokenOther
	}
	off, n := binary.Uvarint(body[9:])
	if n <= 0 || 9+n != len(body) || off == 0 || off >= MaxResults {
		return 0, errTokenMalformed
	}
	return int(off), nil
}
