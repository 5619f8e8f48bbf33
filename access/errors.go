package access

import (
	"errors"
	"fmt"
)

// Code classifies a domain error so that each transport can map it to its own
// status (a Connect code, an MQTT reason, an HTTP status). Codes are stable
// snake_case strings suitable for logs and JSON.
type Code string

// The domain error codes.
const (
	// Invalid means the input was malformed or broke a rule; retrying the
	// same input will fail again.
	Invalid Code = "invalid"
	// NotFound means a referenced entity does not exist.
	NotFound Code = "not_found"
	// Conflict means the change contradicts the current state, such as
	// moving a visit backwards or redefining an immutable grant.
	Conflict Code = "conflict"
	// Denied means a policy forbids the operation.
	Denied Code = "denied"
	// Unavailable means the operation cannot be done now but may succeed
	// later.
	Unavailable Code = "unavailable"
	// Internal is the code of any error that carries no domain code.
	Internal Code = "internal"
)

// Error is a domain error. Code classifies it, Op names the operation that
// failed (for example "access.DecodeWiegand"), Msg is a human-readable
// message and Err is the underlying error, if any. An Error is immutable once
// returned and safe to share between goroutines.
type Error struct {
	Code Code
	Op   string
	Err  error
	Msg  string
}

// Error returns the error text: the operation, the message and the wrapped
// error, separated by ": ", leaving out the parts that are empty. When both
// the message and the wrapped error are empty, the code stands in for them.
func (e *Error) Error() string {
	var s string
	if e.Op != "" {
		s = e.Op + ": "
	}
	switch {
	case e.Msg != "" && e.Err != nil:
		s += e.Msg + ": " + e.Err.Error()
	case e.Msg != "":
		s += e.Msg
	case e.Err != nil:
		s += e.Err.Error()
	default:
		s += string(e.Code)
	}
	return s
}

// Unwrap returns the wrapped error, so that errors.Is and errors.As see
// through an Error.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the first Error with a non-empty Code found by
// walking err's chain of wrapped errors. It returns Internal when there is no
// such Error and the empty Code when err is nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return Internal
		}
		if e.Code != "" {
			return e.Code
		}
		err = e.Err
	}
	return Internal
}

// Errorf returns an Error with the given code whose text is formatted as by
// fmt.Errorf. A %w verb in format wraps its operand, so errors.Is matches the
// sentinel errors of this package through the result.
func Errorf(code Code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if errors.Unwrap(err) == nil {
		if _, multi := err.(interface{ Unwrap() []error }); !multi {
			return &Error{Code: code, Msg: err.Error()}
		}
	}
	return &Error{Code: code, Err: err}
}

// opError returns an Error for operation op with the code of err (or code
// when err has none) wrapping err.
func opError(op string, code Code, err error) error {
	if c := ErrorCode(err); c != Internal {
		code = c
	}
	return &Error{Code: code, Op: op, Err: err}
}

// Sentinel errors. Each is an *Error carrying the code shown, so ErrorCode
// reports that code for any error that wraps one of them. Match them with
// errors.Is.
var (
	// ErrBadID (invalid) reports a string that is not a canonical ULID.
	ErrBadID error = &Error{Code: Invalid, Msg: "malformed id"}
	// ErrIDTime (invalid) reports a time outside the range a ULID can hold
	// (1970-01-01 up to 48 bits of milliseconds).
	ErrIDTime error = &Error{Code: Invalid, Msg: "time out of id range"}
	// ErrIDOverflow (unavailable) reports that IDGen exhausted the random
	// part within one millisecond; retrying in a later millisecond succeeds.
	ErrIDOverflow error = &Error{Code: Unavailable, Msg: "id random part overflow"}
	// ErrBadDate (invalid) reports a date that is not a real calendar date
	// in the form 2006-01-02.
	ErrBadDate error = &Error{Code: Invalid, Msg: "malformed date"}
	// ErrBadMinute (invalid) reports a time of day that is not HH:MM
	// between 00:00 and 24:00.
	ErrBadMinute error = &Error{Code: Invalid, Msg: "malformed time of day"}
	// ErrBadTimeZone (invalid) reports a time zone name that
	// time.LoadLocation cannot load.
	ErrBadTimeZone error = &Error{Code: Invalid, Msg: "unknown time zone"}
	// ErrBadCardNumber (invalid) reports a card number that is zero or not
	// a decimal unsigned 64-bit integer.
	ErrBadCardNumber error = &Error{Code: Invalid, Msg: "malformed card number"}
	// ErrBadParity (invalid) reports a Wiegand frame whose parity bits do
	// not match its data bits.
	ErrBadParity error = &Error{Code: Invalid, Msg: "wiegand parity mismatch"}
	// ErrBadLength (invalid) reports a Wiegand frame with bits set beyond its
	// stated length.
	ErrBadLength error = &Error{Code: Invalid, Msg: "wiegand length mismatch"}
	// ErrUnknownFormat (invalid) reports a Wiegand frame length or format
	// name that no supported format has.
	ErrUnknownFormat error = &Error{Code: Invalid, Msg: "unknown wiegand format"}
	// ErrOutOfRange (invalid) reports a facility code or card number too
	// large for its Wiegand format, or a card number that does not map to a
	// Wiegand credential.
	ErrOutOfRange error = &Error{Code: Invalid, Msg: "value out of range for format"}
	// ErrVisitBackwards (conflict) reports an attempt to move a visit to an
	// earlier state; a visit is never reopened, a new one is made.
	ErrVisitBackwards error = &Error{Code: Conflict, Msg: "visit state cannot move backwards"}
	// ErrGrantImmutable (conflict) reports a grant put again under the same
	// ID with different contents; re-granting makes a new ID.
	ErrGrantImmutable error = &Error{Code: Conflict, Msg: "grant is immutable"}
	// ErrProfileNotAllowed (denied) reports a visitor profile that the
	// visitor type does not allow.
	ErrProfileNotAllowed error = &Error{Code: Denied, Msg: "profile not allowed for visitor type"}
	// ErrVisitTooLong (invalid) reports a visit longer than its visitor
	// type's maximum duration.
	ErrVisitTooLong error = &Error{Code: Invalid, Msg: "visit longer than allowed"}
	// ErrEscortRequired (invalid) reports a visit without an escort whose
	// visitor type requires one.
	ErrEscortRequired error = &Error{Code: Invalid, Msg: "escort required"}
)
