package sitestate

import (
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// The conversions between the wire messages of gatehouse.access.v1 and the
// domain types. Enum values are numbered alike on both sides (asserted by
// convert_test.go), so enums convert by value; validity times are Unix
// milliseconds with 0 meaning unbounded.

// msToTime converts Unix milliseconds to a time, 0 to the zero time.
func msToTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// timeToMs converts a time to Unix milliseconds, the zero time to 0.
func timeToMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func ids(in []string) []access.ID {
	if len(in) == 0 {
		return nil
	}
	out := make([]access.ID, len(in))
	for i, s := range in {
		out[i] = access.ID(s)
	}
	return out
}

func strs(in []access.ID) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	return out
}

// SiteFromProto converts a wire site.
func SiteFromProto(m *accessv1.Site) access.Site {
	s := access.Site{ID: access.ID(m.GetId()), Name: m.GetName(), TimeZone: m.GetTimeZone()}
	for _, d := range m.GetHolidays() {
		s.Holidays = append(s.Holidays, access.Date{Year: int(d.GetYear()), Month: time.Month(d.GetMonth()), Day: int(d.GetDay())})
	}
	return s
}

// SiteToProto converts a site to its wire form.
func SiteToProto(s access.Site) *accessv1.Site {
	m := &accessv1.Site{Id: string(s.ID), Name: s.Name, TimeZone: s.TimeZone}
	for _, d := range s.Holidays {
		m.Holidays = append(m.Holidays, &accessv1.Date{Year: int32(d.Year), Month: int32(d.Month), Day: int32(d.Day)})
	}
	return m
}

// ZoneFromProto converts a wire zone.
func ZoneFromProto(m *accessv1.Zone) access.Zone {
	return access.Zone{ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), Name: m.GetName(), AntiPassback: m.GetAntiPassback()}
}

// ZoneToProto converts a zone to its wire form.
func ZoneToProto(z access.Zone) *accessv1.Zone {
	return &accessv1.Zone{Id: string(z.ID), SiteId: string(z.SiteID), Name: z.Name, AntiPassback: z.AntiPassback}
}

// DoorFromProto converts a wire door.
func DoorFromProto(m *accessv1.Door) access.Door {
	return access.Door{
		ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), ZoneID: access.ID(m.GetZoneId()), Name: m.GetName(),
		Direction: access.Direction(m.GetDirection()), HighSecurity: m.GetHighSecurity(),
		MaxOffline: time.Duration(m.GetMaxOfflineMs()) * time.Millisecond,
	}
}

// DoorToProto converts a door to its wire form.
func DoorToProto(d access.Door) *accessv1.Door {
	return &accessv1.Door{
		Id: string(d.ID), SiteId: string(d.SiteID), ZoneId: string(d.ZoneID), Name: d.Name,
		Direction: accessv1.Direction(d.Direction), HighSecurity: d.HighSecurity, MaxOfflineMs: d.MaxOffline.Milliseconds(),
	}
}

// ScheduleFromProto converts a wire schedule.
func ScheduleFromProto(m *accessv1.Schedule) access.Schedule {
	s := access.Schedule{ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), Name: m.GetName(), ClosedOnHolidays: m.GetClosedOnHolidays()}
	for _, w := range m.GetWindows() {
		s.Windows = append(s.Windows, access.Window{Day: time.Weekday(w.GetWeekday()), Start: access.Minute(w.GetStartMinute()), End: access.Minute(w.GetEndMinute())})
	}
	return s
}

// ScheduleToProto converts a schedule to its wire form.
func ScheduleToProto(s access.Schedule) *accessv1.Schedule {
	m := &accessv1.Schedule{Id: string(s.ID), SiteId: string(s.SiteID), Name: s.Name, ClosedOnHolidays: s.ClosedOnHolidays}
	for _, w := range s.Windows {
		m.Windows = append(m.Windows, &accessv1.Window{Weekday: int32(w.Day), StartMinute: int32(w.Start), EndMinute: int32(w.End)})
	}
	return m
}

// GroupFromProto converts a wire group.
func GroupFromProto(m *accessv1.Group) access.Group {
	return access.Group{
		ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), Name: m.GetName(), Doors: ids(m.GetDoorIds()),
		ScheduleID: access.ID(m.GetScheduleId()), Kind: access.GroupKind(m.GetKind()),
	}
}

// GroupToProto converts a group to its wire form.
func GroupToProto(g access.Group) *accessv1.Group {
	return &accessv1.Group{
		Id: string(g.ID), SiteId: string(g.SiteID), Name: g.Name, DoorIds: strs(g.Doors),
		ScheduleId: string(g.ScheduleID), Kind: accessv1.GroupKind(g.Kind),
	}
}

// PersonFromProto converts a wire person.
func PersonFromProto(m *accessv1.Person) access.Person {
	return access.Person{
		ID: access.ID(m.GetId()), Kind: access.PersonKind(m.GetKind()), OccupierID: access.ID(m.GetOccupierId()),
		Name: m.GetName(), Email: m.GetEmail(), Active: m.GetActive(), OfflineAccess: m.GetOfflineAccess(),
		Deleted: m.GetDeleted(), ValidFrom: msToTime(m.GetValidFromMs()), ValidUntil: msToTime(m.GetValidUntilMs()),
	}
}

// PersonToProto converts a person to its wire form.
func PersonToProto(p access.Person) *accessv1.Person {
	return &accessv1.Person{
		Id: string(p.ID), Kind: accessv1.PersonKind(p.Kind), OccupierId: string(p.OccupierID), Name: p.Name, Email: p.Email,
		Active: p.Active, OfflineAccess: p.OfflineAccess, Deleted: p.Deleted,
		ValidFromMs: timeToMs(p.ValidFrom), ValidUntilMs: timeToMs(p.ValidUntil),
	}
}

// CardFromProto converts a wire card.
func CardFromProto(m *accessv1.Card) access.Card {
	return access.Card{
		Number: access.CardNumber(m.GetNumber()), PersonID: access.ID(m.GetPersonId()), VisitID: access.ID(m.GetVisitId()),
		SiteID: access.ID(m.GetSiteId()), Status: access.CardStatus(m.GetStatus()),
		ValidFrom: msToTime(m.GetValidFromMs()), ValidUntil: msToTime(m.GetValidUntilMs()),
	}
}

// CardToProto converts a card to its wire form.
func CardToProto(c access.Card) *accessv1.Card {
	return &accessv1.Card{
		Number: uint64(c.Number), PersonId: string(c.PersonID), VisitId: string(c.VisitID), SiteId: string(c.SiteID),
		Status: accessv1.CardStatus(c.Status), ValidFromMs: timeToMs(c.ValidFrom), ValidUntilMs: timeToMs(c.ValidUntil),
	}
}

// GrantFromProto converts a wire grant.
func GrantFromProto(m *accessv1.Grant) access.Grant {
	return access.Grant{
		ID: access.ID(m.GetId()), HolderID: access.ID(m.GetHolderId()), GroupID: access.ID(m.GetGroupId()),
		ValidFrom: msToTime(m.GetValidFromMs()), ValidUntil: msToTime(m.GetValidUntilMs()), Removed: m.GetRemoved(),
	}
}

// GrantToProto converts a grant to its wire form.
func GrantToProto(g access.Grant) *accessv1.Grant {
	return &accessv1.Grant{
		Id: string(g.ID), HolderId: string(g.HolderID), GroupId: string(g.GroupID),
		ValidFromMs: timeToMs(g.ValidFrom), ValidUntilMs: timeToMs(g.ValidUntil), Removed: g.Removed,
	}
}

// VisitFromProto converts a wire visit.
func VisitFromProto(m *accessv1.Visit) access.Visit {
	return access.Visit{
		ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), HostID: access.ID(m.GetHostId()),
		VisitorID: access.ID(m.GetVisitorId()), TypeID: access.ID(m.GetTypeId()),
		From: msToTime(m.GetFromMs()), Until: msToTime(m.GetUntilMs()), Escort: m.GetEscort(), State: access.VisitState(m.GetState()),
	}
}

// VisitToProto converts a visit to its wire form.
func VisitToProto(v access.Visit) *accessv1.Visit {
	return &accessv1.Visit{
		Id: string(v.ID), SiteId: string(v.SiteID), HostId: string(v.HostID), VisitorId: string(v.VisitorID), TypeId: string(v.TypeID),
		FromMs: timeToMs(v.From), UntilMs: timeToMs(v.Until), Escort: v.Escort, State: accessv1.VisitState(v.State),
	}
}

// VisitorTypeFromProto converts a wire visitor type.
func VisitorTypeFromProto(m *accessv1.VisitorType) access.VisitorType {
	return access.VisitorType{
		ID: access.ID(m.GetId()), Name: m.GetName(), AllowedGroups: ids(m.GetAllowedGroupIds()),
		RequiredDocuments: m.GetRequiredDocuments(), MaxDuration: time.Duration(m.GetMaxDurationMs()) * time.Millisecond,
		EscortRequired: m.GetEscortRequired(),
	}
}

// VisitorTypeToProto converts a visitor type to its wire form.
func VisitorTypeToProto(vt access.VisitorType) *accessv1.VisitorType {
	return &accessv1.VisitorType{
		Id: string(vt.ID), Name: vt.Name, AllowedGroupIds: strs(vt.AllowedGroups), RequiredDocuments: vt.RequiredDocuments,
		MaxDurationMs: vt.MaxDuration.Milliseconds(), EscortRequired: vt.EscortRequired,
	}
}

// DeviceFromProto converts a wire device.
func DeviceFromProto(m *accessv1.Device) access.Device {
	return access.Device{
		ID: access.ID(m.GetId()), SiteID: access.ID(m.GetSiteId()), Kind: access.DeviceKind(m.GetKind()), Name: m.GetName(),
		DoorID: access.ID(m.GetDoorId()), SecretHash: m.GetSecretHash(), Disabled: m.GetDisabled(),
	}
}

// DeviceToProto converts a device to its wire form.
func DeviceToProto(d access.Device) *accessv1.Device {
	return &accessv1.Device{
		Id: string(d.ID), SiteId: string(d.SiteID), Kind: accessv1.DeviceKind(d.Kind), Name: d.Name,
		DoorId: string(d.DoorID), SecretHash: d.SecretHash, Disabled: d.Disabled,
	}
}
