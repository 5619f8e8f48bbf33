package hub

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
)

// authorizeConsole authenticates a ConsoleService call by its API key
// (Authorization: Bearer <key>) and requires role admin or security: the
// console's answers name doors, sites, masked cards and the sync state of
// every site, which only security staff may read. It returns ctx carrying
// the caller's principal, or an Unauthenticated or PermissionDenied error.
func (h *Hub) authorizeConsole(ctx context.Context, header http.Header) (context.Context, error) {
	keys, err := auth.NewKeyring(h.cfg.APIKeys) // checked by Validate
	if err != nil {
		return ctx, connect.NewError(connect.CodeInternal, err)
	}
	p, err := keys.Authenticate(header.Get("Authorization"))
	if err != nil {
		return ctx, err
	}
	ctx = auth.WithPrincipal(ctx, p)
	if _, err := auth.Require(ctx, auth.Admin, auth.Security); err != nil {
		return ctx, err
	}
	return ctx, nil
}
