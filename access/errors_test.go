package access_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

func TestErrorCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want access.Code
	}{
		{"OK/Nil", nil, ""},
		{"OK/Plain", errors.New("boom"), access.Internal},
		{"OK/Direct", &access.Error{Code: access.NotFound, Msg: "no such door"}, access.NotFound},
		{"OK/Wrapped", fmt.Errorf("loading: %w", &access.Error{Code: access.Denied}), access.Denied},
		{"OK/Sentinel", access.ErrBadParity, access.Invalid},
		{"OK/WrappedSentinel", fmt.Errorf("frame: %w", access.ErrIDOverflow), access.Unavailable},
		{"OK/EmptyCodeLooksDeeper", &access.Error{Op: "op", Err: access.ErrVisitBackwards}, access.Conflict},
		{"OK/EmptyCodeNothingDeeper", &access.Error{Op: "op", Err: errors.New("x")}, access.Internal},
		{"OK/Errorf", access.Errorf(access.Unavailable, "no lease"), access.Unavailable},
		{"OK/ErrorfOverridesWrapped", access.Errorf(access.Denied, "x: %w", access.ErrBadParity), access.Denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := access.ErrorCode(tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestError_Error(t *testing.T) {
	tests := []struct {
		name string
		err  *access.Error
		want string
	}{
		{"OK/All", &access.Error{Code: access.Invalid, Op: "access.X", Msg: "bad", Err: errors.New("cause")}, "access.X: bad: cause"},
		{"OK/MsgOnly", &access.Error{Code: access.Invalid, Msg: "bad"}, "bad"},
		{"OK/ErrOnly", &access.Error{Code: access.Invalid, Op: "op", Err: errors.New("cause")}, "op: cause"},
		{"OK/CodeOnly", &access.Error{Code: access.NotFound}, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	t.Run("OK/Message", func(t *testing.T) {
		err := access.Errorf(access.NotFound, "door %s", "D1")
		if got, want := err.Error(), "door D1"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		var e *access.Error
		if !errors.As(err, &e) || e.Err != nil {
			t.Errorf("got %#v, want an *Error with no wrapped error", err)
		}
	})
	t.Run("OK/Wraps", func(t *testing.T) {
		err := access.Errorf(access.Invalid, "frame 0x%x: %w", 5, access.ErrBadParity)
		if !errors.Is(err, access.ErrBadParity) {
			t.Errorf("errors.Is(%v, ErrBadParity) = false", err)
		}
		if got, want := err.Error(), "frame 0x5: wiegand parity mismatch"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("OK/WrapsTwo", func(t *testing.T) {
		err := access.Errorf(access.Invalid, "%w and %w", access.ErrBadParity, access.ErrBadLength)
		if !errors.Is(err, access.ErrBadParity) || !errors.Is(err, access.ErrBadLength) {
			t.Errorf("errors.Is failed for %v", err)
		}
	})
}
