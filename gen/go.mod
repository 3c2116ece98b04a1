module github.com/paperrec/recommender/gen

// The importable API: the generated code and a typed client. Its own module, so that a
// consumer needs only the Go version and dependencies this code needs, not the service's.
go 1.23

require (
	google.golang.org/genproto/googleapis/rpc v0.0.0-20240604185151-ef581f913117
	google.golang.org/grpc v1.64.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.22.0 // indirect
	golang.org/x/sys v0.18.0 // indirect
	golang.org/x/text v0.14.0 // indirect
)
