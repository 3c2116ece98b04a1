// Package apierr holds the service's domain errors (invalid requests, preconditions) and the
// reasons a client can branch on (the README lists them with the codes worth retrying), with no
// transport in it: internal/server maps them to gRPC statuses, each carrying a
// google.rpc.ErrorInfo with its reason.
package apierr

// Domain is the ErrorInfo domain of every error the service sends.
const Domain = "recommender.paperrec.dev"

// Reasons, by the code they come with.
const (
	InvalidRequest         = "INVALID_REQUEST"          // INVALID_ARGUMENT: fields listed in BadRequest
	MalformedRequest       = "MALFORMED_REQUEST"        // INVALID_ARGUMENT: not a valid message (bad protobuf, invalid UTF-8, bad JSON)
	UnsupportedContentType = "UNSUPPORTED_CONTENT_TYPE" // INVALID_ARGUMENT (HTTP 415)
	PaperNotFound          = "PAPER_NOT_FOUND"          // NOT_FOUND: ResourceInfo names the paper
	FeedNotFound           = "FEED_NOT_FOUND"           // NOT_FOUND: ResourceInfo names the feed
	FeedsUnsupported       = "FEEDS_UNSUPPORTED"        // FAILED_PRECONDITION: the store keeps no feeds or write order
	MethodNotFound         = "METHOD_NOT_FOUND"         // NOT_FOUND: no such HTTP path
	EmbeddingNotConfigured = "EMBEDDING_NOT_CONFIGURED" // FAILED_PRECONDITION: dense or hybrid asked of a server without a model
	EmbeddingModelMismatch = "EMBEDDING_MODEL_MISMATCH" // FAILED_PRECONDITION: the store holds another model's vectors
	EmbeddingRefused       = "EMBEDDING_REFUSED"        // FAILED_PRECONDITION: the embedding API refused (key, quota, model)
	VectorSetBusy          = "VECTOR_SET_BUSY"          // FAILED_PRECONDITION: no second vector set to retire, or a re-embedding is filling it
	NoNeighbourLists       = "NO_NEIGHBOUR_LISTS"       // FAILED_PRECONDITION: the server keeps no precomputed neighbour lists
	EmbeddingSwitched      = "EMBEDDING_SWITCHED"       // UNAVAILABLE: the store kept switching models during the call; retry
	APIKeyInvalid          = "API_KEY_INVALID"          // UNAUTHENTICATED: missing or unknown key
	APIKeyScope            = "API_KEY_SCOPE"            // PERMISSION_DENIED: a read key writing
	CrossOriginRefused     = "CROSS_ORIGIN_REFUSED"     // PERMISSION_DENIED (HTTP 403): another site's page
	HostRefused            = "HOST_REFUSED"             // PERMISSION_DENIED (HTTP 403): not a loopback name, without keys
	RateLimited            = "RATE_LIMITED"             // RESOURCE_EXHAUSTED: RetryInfo says when
	StoreOverloaded        = "STORE_OVERLOADED"         // RESOURCE_EXHAUSTED: Qdrant asked to slow down
	StorageFull            = "STORAGE_FULL"             // RESOURCE_EXHAUSTED: the server's disk is full
	BodyTooLarge           = "BODY_TOO_LARGE"           // RESOURCE_EXHAUSTED (HTTP 413): do not resend as is
	StoreUnavailable       = "STORE_UNAVAILABLE"        // UNAVAILABLE
	EmbeddingUnavailable   = "EMBEDDING_UNAVAILABLE"    // UNAVAILABLE
	ShuttingDown           = "SHUTTING_DOWN"            // UNAVAILABLE: retry on another replica
	DeadlineExceeded       = "DEADLINE_EXCEEDED"        // DEADLINE_EXCEEDED
	Canceled               = "CANCELED"                 // CANCELED
	Internal               = "INTERNAL"                 // INTERNAL: logged on the server
)
