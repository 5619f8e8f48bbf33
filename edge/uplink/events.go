package uplink

import (
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// EventDelta returns the delta of the site's events lane carrying ev, an
// access event recorded in the site's event log (edge/sitestate): numbered
// by the event's sequence number, holding its fields made canonical
// (replication.EventRecord.Canonical), so that every recorded event can
// travel and none blocks the lane. It returns an error only for a
// malformed site ID or a zero sequence number.
func EventDelta(site string, ev *accessv1.AccessEvent) (replication.Delta, error) {
	reason := access.Reason(ev.GetReason()) // the proto enum numbers access.Reason's values
	r := replication.EventRecord{At: time.UnixMilli(ev.GetAtMs()), Door: access.ID(ev.GetDoorId()),
		Device: access.ID(ev.GetDeviceId()), Card: access.CardNumber(ev.GetCard()), Holder: access.ID(ev.GetHolderId()),
		Granted: ev.GetGranted(), Reason: reason, Offline: ev.GetOffline(), RequestID: ev.GetRequestId(),
		Node: ev.GetNode(), Type: ev.GetType(), Detail: ev.GetDetail(), DeviceSeq: ev.GetDeviceSeq()}
	return replication.EventDelta(site, ev.GetSeq(), r.Canonical())
}
