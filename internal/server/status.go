package server

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/paperrec/recommender/internal/apierr"
)

// NewStatus returns a status error with an ErrorInfo (reason, apierr.Domain, metadata) first
// and then the details given.
func NewStatus(code codes.Code, reason, msg string, meta map[string]string, details ...protoadapt.MessageV1) error {
	all := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: apierr.Domain, Metadata: meta}}, details...)
	st, err := status.New(code, msg).WithDetails(all...)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of an error from the service, or "".
func Reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
