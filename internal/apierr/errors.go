package apierr

import "fmt"

// Violation is one invalid request field.
type Violation struct {
	Field       string // path in the request, e.g. "papers[3].title"
	Description string
}

// ValidationError lists every invalid field of a request (INVALID_ARGUMENT with BadRequest).
type ValidationError struct{ Violations []Violation }

func (e *ValidationError) Error() string {
	if len(e.Violations) == 1 {
		return fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
	}
	return fmt.Sprintf("invalid request: %d problems, first %s: %s", len(e.Violations),
		e.Violations[0].Field, e.Violations[0].Description)
}

// Add records a violation.
func (e *ValidationError) Add(field, format string, args ...any) {
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
	Reason  string // e.g. SeedNotEmbedded
	Subject string // what it is about, e.g. "paper/2101.00001" or "server"
	Message string
}

func (e *PreconditionError) Error() string { return e.Message }
