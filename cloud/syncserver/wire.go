package syncserver

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// connectError maps an error to a Connect error by its access code (one
// table for this transport, STYLE.md §4). A lost lease is unavailable: the
// site reconnects, perhaps to the process that now owns its stream.
func connectError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	if errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrLeaseHeld) || errors.Is(err, store.ErrLeaseLost) {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	code := connect.CodeInternal
	switch access.ErrorCode(err) {
	case access.Invalid:
		code = connect.CodeInvalidArgument
	case access.NotFound:
		code = connect.CodeNotFound
	case access.Conflict:
		code = connect.CodeFailedPrecondition
	case access.Denied:
		code = connect.CodePermissionDenied
	case access.Unavailable:
		code = connect.CodeUnavailable
	}
	return connect.NewError(code, err)
}
