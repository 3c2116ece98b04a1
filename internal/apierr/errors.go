package apierr

import "fmt"

// Violation is one invalid request field.
type Violation struct {
	Field       string // path in the request, e.g. "papers[3].title"
	Description string
}

// ValidationError lists the invalid fields of a request (INVALID_ARGUMENT with BadRequest): the
// first MaxViolations, and how many more there were.
type ValidationError struct {
	Violations []Violation
	More       int // violations past the first MaxViolations, not kept
}

// MaxViolations bounds the violations an error keeps: a request of a thousand bad ids must not
// get an answer ten times its size.
const MaxViolations = 20

func (e *ValidationError) Error() string {
	if n := len(e.Violations) + e.More; n > 1 {
		return fmt.Sprintf("invalid request: %d problems, first %s: %s", n, e.Violations[0].Field, e.Violations[0].Description)
	}
	return fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
}

// Add records a violation, or counts it past the first MaxViolations.
func (e *ValidationError) Add(field, format string, args ...any) {
	if len(e.Violations) >= MaxViolations {
		e.More++
		return
	}
	e.Violations = append(e.Violations, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// ErrOrNil returns e when it holds violations, so callers can `return v.ErrOrNil()`.
func (e *ValidationError) ErrOrNil() error {
	if len(e.Violations) == 0 {
		return nil
	}
	return e
}

// Invalid is a ValidationError of one field.
func Invalid(field, description string) *ValidationError {
	return &ValidationError{Violations: []Violation{{Field: field, Description: description}}}
}

// PreconditionError is a request this deployment cannot serve as configured, or not yet
// (FAILED_PRECONDITION with PreconditionFailure).
type PreconditionError struct {
	Reason  string // e.g. EmbeddingNotConfigured
	Subject string // what it is about, e.g. "paper/2101.00001" or "server"
	Message string
}

func (e *PreconditionError) Error() string { return e.Message }

// EmbeddingError is a failure of the embedding API. Kind names it for the client (the upstream
// message, which may quote inputs or account details, stays in Err for the log); Retryable says
// whether trying again later may work, else an operator must fix the configuration.
type EmbeddingError struct {
	Kind      string
	Retryable bool
	Err       error
}

func (e *EmbeddingError) Error() string { return e.Err.Error() }
func (e *EmbeddingError) Unwrap() error { return e.Err }

// FeedNotFoundError names a feed id no feed has.
type FeedNotFoundError struct{ ID string }

func (e *FeedNotFoundError) Error() string { return "feed not found: " + e.ID }

// AccessError refuses a caller: no valid API key, or (Denied) a key without the scope the
// method needs, with the key's id, its scope and the one required.
type AccessError struct {
	Denied                 bool
	KeyID, Scope, Required string
	Message                string
}

func (e *AccessError) Error() string { return e.Message }
