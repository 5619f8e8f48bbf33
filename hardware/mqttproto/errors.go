package mqttproto

import "github.com/gatehouse/gatehouse/access"

// Sentinel errors. Each is an *access.Error with code access.Invalid, so
// access.ErrorCode reports Invalid for every error this package returns; match
// the kind of problem with errors.Is. Errors about a value the domain checks
// (a malformed ULID, a Wiegand frame with bad parity) also wrap the domain's
// sentinel, such as access.ErrBadID or access.ErrBadParity.
var (
	// ErrTooLarge reports a payload longer than MaxPayload bytes, or a
	// message too large to encode within that limit.
	ErrTooLarge error = &access.Error{Code: access.Invalid, Msg: "payload too large"}
	// ErrSyntax reports a payload that is not one well-formed JSON object in
	// the profile this protocol accepts: truncated or malformed JSON, data
	// after the object, null, a key that is not lower-case ASCII, a
	// duplicate key, invalid UTF-8 or nesting deeper than allowed.
	ErrSyntax error = &access.Error{Code: access.Invalid, Msg: "malformed payload"}
	// ErrVersion reports a payload whose "v" is not a version this package
	// speaks (see Version).
	ErrVersion error = &access.Error{Code: access.Invalid, Msg: "unsupported version"}
	// ErrUnknownField reports a field the message's schema does not have,
	// or one that its type does not allow.
	ErrUnknownField error = &access.Error{Code: access.Invalid, Msg: "unknown field"}
	// ErrMissingField reports a required field that is absent.
	ErrMissingField error = &access.Error{Code: access.Invalid, Msg: "missing field"}
	// ErrBadValue reports a field of the wrong JSON type, a value out of its
	// range or format, an unknown type or enumeration name, or fields that
	// contradict each other.
	ErrBadValue error = &access.Error{Code: access.Invalid, Msg: "bad field value"}
	// ErrBadTopic reports a topic or topic filter that does not follow the
	// layout gh/{site}/{kind}/{device}/{channel}, or an invalid site, kind,
	// device or channel.
	ErrBadTopic error = &access.Error{Code: access.Invalid, Msg: "bad topic"}
)
