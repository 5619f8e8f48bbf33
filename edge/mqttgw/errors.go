package mqttgw

import "github.com/gatehouse/gatehouse/access"

// Sentinel errors. Each is an *access.Error carrying the code shown, so
// access.ErrorCode reports that code for any error wrapping one of them.
// Match them with errors.Is.
var (
	// ErrBadConfig (invalid) reports a Config that fails Validate.
	ErrBadConfig error = &access.Error{Code: access.Invalid, Op: "mqttgw", Msg: "bad config"}
	// ErrClosed (unavailable) reports Open on a gateway that is already
	// open, or was closed.
	ErrClosed error = &access.Error{Code: access.Unavailable, Op: "mqttgw", Msg: "gateway is closed or already open"}
	// ErrBroker (unavailable) reports that the embedded broker could not
	// start (its listener could not bind, for example) or that the external
	// broker could not be reached and subscribed to before Open's context
	// ended.
	ErrBroker error = &access.Error{Code: access.Unavailable, Op: "mqttgw", Msg: "broker unavailable"}
	// ErrEventsLost (unavailable) reports that Close gave up waiting for the
	// site to record queued access events; the error says how many were
	// lost.
	ErrEventsLost error = &access.Error{Code: access.Unavailable, Op: "mqttgw", Msg: "access events not recorded"}
)
