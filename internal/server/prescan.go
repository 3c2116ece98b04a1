package server

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
)

// A list over its limit is refused before the request is decoded: decoding a 4 MiB message of
// 300,000 ids allocates 300,000 strings (tens of MB, 80 ms over gRPC, 250 ms from JSON) only for
// validation to refuse the list by its length. The scans below count each list's entries on
// the bytes as they came, protobuf or JSON, against the limits validation applies again after
// the decode.

// listLimits are the API's limits on list fields (see validate.go and feeds.go).
var listLimits = map[protoreflect.FullName]int{
	"recommender.v1.RecommendRequest.positive_paper_ids":  MaxSeeds,
	"recommender.v1.RecommendRequest.negative_paper_ids":  MaxSeeds,
	"recommender.v1.RecommendRequest.positive_papers":     MaxSeeds,
	"recommender.v1.RecommendRequest.negative_papers":     MaxSeeds,
	"recommender.v1.RecommendRequest.candidate_paper_ids": MaxCandidates,
	"recommender.v1.Filter.exclude_paper_ids":             MaxExcluded,
	"recommender.v1.Filter.categories":                    MaxCategories,
	"recommender.v1.Filter.authors":                       MaxFilterAuthors,
	"recommender.v1.SeedPaper.authors":                    MaxSeedList,
	"recommender.v1.SeedPaper.categories":                 MaxSeedList,
	"recommender.v1.Paper.authors":                        MaxAuthors,
	"recommender.v1.Paper.categories":                     MaxCategories,
	"recommender.v1.Paper.topics":                         MaxCategories,
	"recommender.v1.UpsertPapersRequest.papers":           MaxBatch,
	"recommender.v1.IngestPapersRequest.papers":           MaxBatch,
	"recommender.v1.DeletePapersRequest.paper_ids":        MaxBatch,
	"recommender.v1.Feed.positive_paper_ids":              MaxSeeds,
	"recommender.v1.Feed.positive_papers":                 MaxSeeds,
}

// listTooLong is the error of a list over its limit.
func listTooLong(fd protoreflect.FieldDescriptor, path string) error {
	return apierr.Invalid(path, fmt.Sprintf("has more than %d entries, the limit", listLimits[fd.FullName()]))
}

// requestOf is the request message of a method of the recommender service, or nil.
func requestOf(method string) protoreflect.MessageDescriptor {
	svc := recommenderv1.File_recommender_v1_recommender_proto.Services().ByName("RecommenderService")
	name := protoreflect.Name(method[len("/"+string(svc.FullName())+"/"):])
	if m := svc.Methods().ByName(name); m != nil {
		return m.Input()
	}
	return nil
}

// prescanProto counts the entries of md's list fields in b, a protobuf message, recursing into
// its messages, and returns an error for the first list over its limit. Malformed bytes end the
// scan quietly: the decoder reports them.
func prescanProto(b []byte, md protoreflect.MessageDescriptor, path string) error {
	var counts map[protowire.Number]int
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd != nil && fd.IsList() {
			if counts == nil {
				counts = map[protowire.Number]int{}
			}
			counts[num]++
			if limit, ok := listLimits[fd.FullName()]; ok && counts[num] > limit {
				return listTooLong(fd, path+string(fd.Name()))
			}
		}
		if fd != nil && fd.Message() != nil && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil
			}
			inner := path + string(fd.Name()) + "."
			if fd.IsList() {
				inner = fmt.Sprintf("%s%s[%d].", path, fd.Name(), counts[num]-1)
			}
			if err := prescanProto(v, fd.Message(), inner); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// PrescanJSON is prescanProto for a request of method in protobuf JSON (field names as JSON or
// proto names); bytes that are not JSON end the scan quietly, for the decoder to report.
func PrescanJSON(b []byte, method string) error {
	md := requestOf(method)
	if md == nil {
		return nil
	}
	if err := (&jsonScan{b: b}).object(md, ""); err != errNotJSON {
		return err
	}
	return nil
}

// PrescanProto is prescanProto for a request of method.
func PrescanProto(b []byte, method string) error {
	if md := requestOf(method); md != nil {
		return prescanProto(b, md, "")
	}
	return nil
}

// errNotJSON ends a scan at bytes that are not JSON.
var errNotJSON = errors.New("not JSON")

// jsonScan walks JSON without decoding it.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// object scans an object of message md.
func (s *jsonScan) object(md protoreflect.MessageDescriptor, path string) error {
	if s.ws(); s.i >= len(s.b) || s.b[s.i] != '{' {
		return errNotJSON
	}
	s.i++
	for first := true; ; first = false {
		if s.ws(); s.i < len(s.b) && s.b[s.i] == '}' && first {
			s.i++
			return nil
		}
		start := s.i + 1
		if !s.skipString() {
			return errNotJSON
		}
		key := string(s.b[start : s.i-1])
		if s.ws(); s.i >= len(s.b) || s.b[s.i] != ':' {
			return errNotJSON
		}
		s.i++
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if err := s.value(fd, path); err != nil {
			return err
		}
		if err := s.next('}'); err != errMore {
			return err
		}
	}
}

// errMore says a list or object goes on after a comma.
var errMore = errors.New("more")

// next passes the comma after an entry (errMore) or the close that ends the list or object (nil).
func (s *jsonScan) next(close byte) error {
	switch s.ws(); {
	case s.i < len(s.b) && s.b[s.i] == ',':
		s.i++
		return errMore
	case s.i < len(s.b) && s.b[s.i] == close:
		s.i++
		return nil
	}
	return errNotJSON
}

// value scans the value of field fd (nil: unknown), counting a limited list's entries.
func (s *jsonScan) value(fd protoreflect.FieldDescriptor, path string) error {
	if s.ws(); fd == nil || s.i >= len(s.b) {
		return s.skip()
	}
	if !fd.IsList() || s.b[s.i] != '[' {
		if fd.Message() != nil && s.b[s.i] == '{' {
			return s.object(fd.Message(), path+string(fd.Name())+".")
		}
		return s.skip()
	}
	limit, limited := listLimits[fd.FullName()]
	s.i++
	for n := 0; ; n++ {
		if s.ws(); s.i < len(s.b) && s.b[s.i] == ']' && n == 0 {
			s.i++
			return nil
		}
		if limited && n >= limit {
			return listTooLong(fd, path+string(fd.Name()))
		}
		var err error
		if fd.Message() != nil && s.i < len(s.b) && s.b[s.i] == '{' {
			err = s.object(fd.Message(), fmt.Sprintf("%s%s[%d].", path, fd.Name(), n))
		} else {
			err = s.skip()
		}
		if err != nil {
			return err
		}
		if err := s.next(']'); err != errMore {
			return err
		}
	}
}

// skipString passes a string, the quotes included.
func (s *jsonScan) skipString() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return true
		}
	}
	return false
}

// skip passes one value of any kind, nested to any depth, without recursion.
func (s *jsonScan) skip() error {
	if !s.skipValue() {
		return errNotJSON
	}
	return nil
}

func (s *jsonScan) skipValue() bool {
	depth := 0
	for {
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch c := s.b[s.i]; {
		case c == '"':
			if !s.skipString() {
				return false
			}
		case c == '{' || c == '[':
			depth++
			s.i++
			continue
		case c == '}' || c == ']':
			if depth == 0 {
				return false
			}
			depth--
			s.i++
		case c == ',' || c == ':':
			if depth == 0 {
				return false
			}
			s.i++
			continue
		default: // a number or a literal
			start := s.i
			for s.i < len(s.b) && strings.IndexByte(" \t\n\r,:]}", s.b[s.i]) < 0 {
				s.i++
			}
			if s.i == start {
				return false
			}
		}
		if depth == 0 {
			return true
		}
	}
}
