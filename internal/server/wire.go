package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
)

// A request message that does not decode (bad protobuf, invalid UTF-8 in a string) is the
// client's error, INVALID_ARGUMENT. grpc-go reports it as INTERNAL, and writes that status as
// soon as the decode fails, before a handler could say otherwise. So the server's codec hands
// the recommender's messages that fail to decode over empty, noting the error, and the
// service's decoding (registerService, wireStream) turns the note into INVALID_ARGUMENT.

// undecoded holds the decode error of each message handed over empty, until it is taken.
var undecoded sync.Map // proto.Message -> error

// wireCodec is the proto codec, lenient for the recommender's messages as described above.
type wireCodec struct{ encoding.CodecV2 }

// Lists over their limits are refused the same way, before the message is decoded (prescan.go).
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok || !strings.HasPrefix(string(proto.MessageName(m)), "recommender.v1.") {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	err := prescanProto(buf.ReadOnlyData(), m.ProtoReflect().Descriptor(), "")
	if err == nil {
		err = proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	if err != nil {
		proto.Reset(m)
		undecoded.Store(m, err)
	}
	return nil
}

// decodeError takes the error noted for m: a list over its limit as such, anything else as a
// message that does not decode; INVALID_ARGUMENT either way.
func decodeError(m any) error {
	err, ok := undecoded.LoadAndDelete(m)
	if !ok {
		return nil
	}
	var verr *apierr.ValidationError
	if errors.As(err.(error), &verr) {
		return toStatus(nil, "", verr)
	}
	return NewStatus(codes.InvalidArgument, apierr.MalformedRequest,
		"the request is not a valid message: "+err.(error).Error(), nil)
}

// registerService registers the recommender service with each unary method's decoding
// checked (see decodeError).
func registerService(g *grpc.Server, svc recommenderv1.RecommenderServiceServer) {
	desc := recommenderv1.RecommenderService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		h := desc.Methods[i].Handler
		desc.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(m any) error {
				if err := dec(m); err != nil {
					return err
				}
				return decodeError(m)
			}, ic)
		}
	}
	g.RegisterService(&desc, svc)
}

// wireStream is a server stream whose received messages are checked (see decodeError).
type wireStream struct{ grpc.ServerStream }

func (w wireStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return decodeError(m)
}
