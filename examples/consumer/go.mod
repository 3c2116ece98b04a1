module example.com/consumer

// A service of someone else's that calls the recommender. CI builds it with the Go 1.23
// toolchain: importing the recommender's API must not need a newer Go.
go 1.23

require github.com/paperrec/recommender/gen v0.0.0-00010101000000-000000000000

require (
	golang.org/x/net v0.22.0 // indirect
	golang.org/x/sys v0.18.0 // indirect
	golang.org/x/text v0.14.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20240604185151-ef581f913117 // indirect
	google.golang.org/grpc v1.64.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/paperrec/recommender/gen => ../../gen
