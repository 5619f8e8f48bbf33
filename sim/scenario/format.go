package scenario

import (
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Format returns s in canonical form: setup first (zones, doors, schedules,
// groups, people, readers, controllers, kiosks, dispensers), then one line
// per step, each with its time.
// Parsing the result gives s again, line numbers aside.
func Format(s *Scenario) string {
	var b strings.Builder
	line := func(ws ...string) {
		b.WriteString(strings.Join(ws, " "))
		b.WriteByte('\n')
	}
	for _, z := range s.Zones {
		ws := []string{"zone", z.Name}
		if z.AntiPassback {
			ws = append(ws, "anti-passback")
		}
		line(ws...)
	}
	for _, d := range s.Doors {
		ws := []string{"door", d.Name}
		if d.Zone != "" {
			ws = append(ws, "zone", d.Zone)
		}
		if d.Direction != access.DirNone {
			ws = append(ws, d.Direction.String())
		}
		if d.HighSecurity {
			ws = append(ws, "high-security")
		}
		if d.MaxOffline != 0 {
			ws = append(ws, "max-offline", formatDuration(d.MaxOffline))
		}
		line(ws...)
	}
	for _, sc := range s.Schedules {
		ws := []string{"schedule", sc.Name}
		if sc.Special != SpecialNone {
			ws = append(ws, sc.Special.String())
		}
		for _, r := range sc.Rules {
			ws = append(ws, formatDays(r.Days), r.Start.String()+"-"+r.End.String())
		}
		if sc.ClosedOnHolidays {
			ws = append(ws, "closed-on-holidays")
		}
		line(ws...)
	}
	for _, g := range s.Groups {
		ws := append([]string{"group", g.Name, "doors"}, g.Doors...)
		if g.Schedule != "" {
			ws = append(ws, "schedule", g.Schedule)
		}
		line(ws...)
	}
	for _, p := range s.People {
		ws := []string{"person", p.Name, kindName(p.Kind)}
		if p.Tenant != "" {
			ws = append(ws, "tenant", p.Tenant)
		}
		if p.OfflineAccess {
			ws = append(ws, "offline-access")
		}
		if p.Inactive {
			ws = append(ws, "inactive")
		}
		for _, c := range p.Cards {
			ws = append(ws, "card", c.String())
		}
		if len(p.Groups) > 0 {
			ws = append(append(ws, "groups"), p.Groups...)
		}
		for _, x := range []struct {
			kw string
			i  Instant
		}{{"valid-from", p.ValidFrom}, {"valid-until", p.ValidUntil}, {"card-valid-from", p.CardValidFrom}, {"card-valid-until", p.CardValidUntil}} {
			if x.i.Set {
				ws = append(ws, x.kw, formatInstant(x.i))
			}
		}
		line(ws...)
	}
	for _, r := range s.Readers {
		ws := []string{"reader", r.Name, "door", r.Door}
		if r.Broker != 0 {
			ws = append(ws, "broker", strconv.Itoa(r.Broker))
		}
		line(ws...)
	}
	for _, c := range s.Controllers {
		ws := []string{"controller", c.Name, "door", c.Door}
		if c.Broker != 0 {
			ws = append(ws, "broker", strconv.Itoa(c.Broker))
		}
		line(ws...)
	}
	for _, k := range s.Kiosks {
		ws := []string{"kiosk", k.Name}
		if k.Broker != 0 {
			ws = append(ws, "broker", strconv.Itoa(k.Broker))
		}
		line(ws...)
	}
	for _, d := range s.Dispensers {
		ws := []string{"dispenser", d.Name}
		if d.Stack != 0 {
			ws = append(ws, "stack", strconv.Itoa(d.Stack))
		}
		if d.Broker != 0 {
			ws = append(ws, "broker", strconv.Itoa(d.Broker))
		}
		line(ws...)
	}
	if len(s.Steps) > 0 {
		b.WriteByte('\n')
	}
	for _, st := range s.Steps {
		line("at", formatDuration(st.At), st.Action())
	}
	return b.String()
}

func kindName(k access.PersonKind) string {
	for n, v := range personKinds {
		if v == k {
			return n
		}
	}
	return "?"
}

var dayAbbr = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// formatDays writes days as daily or a comma-separated list.
func formatDays(days []time.Weekday) string {
	if len(days) == 7 {
		return "daily"
	}
	names := make([]string, len(days))
	for i, d := range days {
		names[i] = dayAbbr[d]
	}
	return strings.Join(names, ",")
}

// formatDuration writes d as Go does, without zero trailing units: 15m, 1h,
// 1h30m, 500ms, 1.5s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// formatInstant writes an instant as an RFC 3339 time or a signed offset.
func formatInstant(i Instant) string {
	if !i.Abs.IsZero() {
		return i.Abs.Format(time.RFC3339Nano)
	}
	if i.Rel >= 0 {
		return "+" + formatDuration(i.Rel)
	}
	return formatDuration(i.Rel)
}
