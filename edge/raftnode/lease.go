package raftnode

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
)

// RenewLease is the follower lease renewal of DESIGN.md section 5; it is
// being built (see lease design in docs/architecture.md).
func (s clusterServer) RenewLease(context.Context, *connect.Request[edgev1.RenewLeaseRequest]) (*connect.Response[edgev1.RenewLeaseResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("lease renewal is not built yet"))
}
