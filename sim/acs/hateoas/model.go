package hateoas

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// state is everything the simulator holds; it is saved as JSON.
type state struct {
	Boots       int                    `json:"boots"`
	Prefix      string                 `json:"-"`
	Seq         int64                  `json:"seq"`
	Divisions   []*item                `json:"divisions"`
	CardTypes   []*cardType            `json:"card_types"`
	PDFs        []*pdfDef              `json:"pdfs"`
	Groups      []*item                `json:"groups"`
	Zones       []*item                `json:"zones"`
	Doors       []*item                `json:"doors"`
	Cardholders map[string]*cardholder `json:"cardholders"`
	Held        map[string]string      `json:"held"`
	Changes     []change               `json:"changes"`
	ChangeSeq   int64                  `json:"change_seq"`
	Events      []event                `json:"events"`
	EventSeq    int64                  `json:"event_seq"`
}

// item is a fixed record: a division, access group, zone or door.
type item struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parent      string `json:"parent,omitempty"` // group: parent group; door: entry zone
}

type cardType struct {
	item
	FacilityCode    string `json:"facility_code"`
	CredentialClass string `json:"credential_class"`
	Min, Max        int64
}

type pdfDef struct {
	item
	Unique bool `json:"unique"`
}

type cardholder struct {
	ID          string            `json:"id"`
	FirstName   string            `json:"first_name"`
	LastName    string            `json:"last_name"`
	Description string            `json:"description"`
	Authorised  bool              `json:"authorised"`
	Division    string            `json:"division"`
	PDFs        map[string]string `json:"pdfs"` // by PDF name
	Cards       []*card           `json:"cards"`
	Memberships []*membership     `json:"memberships"`
}

type card struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Number     string `json:"number"`
	Serial     string `json:"serial,omitempty"`
	IssueLevel int    `json:"issue_level"`
	Status     string `json:"status"`
	From       string `json:"from,omitempty"`
	Until      string `json:"until,omitempty"`
}

type membership struct {
	ID    string `json:"id"`
	Group string `json:"group"`
	From  string `json:"from,omitempty"`
	Until string `json:"until,omitempty"`
}

type change struct {
	Seq       int64          `json:"seq"`
	Time      time.Time      `json:"time"`
	Type      string         `json:"type"` // add, update, remove
	Item      string         `json:"item"` // cardholder ID
	OldValues map[string]any `json:"old_values,omitempty"`
	NewValues map[string]any `json:"new_values,omitempty"`
}

type event struct {
	Seq        int64     `json:"seq"`
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	Arrival    time.Time `json:"arrival"`
	Type       string    `json:"type"`
	Message    string    `json:"message"`
	Priority   int       `json:"priority"`
	Cardholder string    `json:"cardholder,omitempty"`
	Door       string    `json:"door,omitempty"`
	Source     string    `json:"source"`
}

// Card status values; any other than "Active" makes a card inactive.
var cardStatuses = []string{"Active", "Disabled (manually)", "Lost", "Stolen", "Damaged"}

// newID returns an opaque ID: letters and digits, all of one length, so
// that sorting by (length, text) is creation order.
func (st *state) newID() string {
	st.Seq++
	return strconv.FormatInt(st.Seq+36*36*36*36*36*10, 36)
}

// lessID orders IDs by creation.
func lessID(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// newState returns the starting site: divisions, card types, personal
// data fields, access groups, zones and doors, and n synthetic cardholders.
func newState(rng *rand.Rand, n int, now time.Time) *state {
	st := &state{Cardholders: map[string]*cardholder{}, Held: map[string]string{}}
	it := func(name, desc, parent string) *item {
		return &item{ID: st.newID(), Name: name, Description: desc, Parent: parent}
	}
	root := it("Root Division", "", "")
	st.Divisions = []*item{root, it("Visitors", "visitor cardholders", "")}
	st.CardTypes = []*cardType{
		{item: *it("Standard 26-bit", "", ""), FacilityCode: "A1234", CredentialClass: "card", Min: 1, Max: 65535},
		{item: *it("Corporate 37-bit", "", ""), FacilityCode: "B54321", CredentialClass: "card", Min: 1, Max: 34359738367},
	}
	st.PDFs = []*pdfDef{
		{item: *it("Email", "unique; use it for the external ID", ""), Unique: true},
		{item: *it("Employee ID", "", ""), Unique: true},
		{item: *it("Department", "", "")},
	}
	staff := it("All Staff", "every employee", "")
	st.Groups = []*item{staff, it("Lobby", "", staff.ID), it("Floor 1", "", staff.ID), it("Floor 2", "", staff.ID),
		it("Server Room", "restricted", ""), it("Visitors", "escorted visitors", "")}
	zone := func(name string) *item { z := it(name, "", ""); st.Zones = append(st.Zones, z); return z }
	door := func(name string, z *item) { st.Doors = append(st.Doors, it(name, "", z.ID)) }
	lobby, f1, f2, srv := zone("Lobby"), zone("Floor 1"), zone("Floor 2"), zone("Server Room")
	door("Lobby Entry", lobby)
	door("Lobby Exit", lobby)
	door("Floor 1 Door", f1)
	door("Floor 2 Door", f2)
	door("Server Room Door", srv)
	first := []string{"Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hugo", "Ines", "Jun", "Kofi", "Lena"}
	last := []string{"Okafor", "Smith", "Nguyen", "Garcia", "Müller", "Rossi", "Kowalski", "Tanaka", "Haddad", "Silva"}
	for i := 0; i < n; i++ {
		ch := &cardholder{
			ID: st.newID(), FirstName: first[rng.IntN(len(first))], LastName: last[rng.IntN(len(last))],
			Authorised: true, Division: root.ID,
			PDFs: map[string]string{"Email": fmt.Sprintf("person%d@example.com", i+1)},
		}
		ch.Cards = []*card{{ID: st.newID(), Type: st.CardTypes[0].ID, Number: strconv.Itoa(1000 + i), Status: "Active"}}
		ch.Memberships = []*membership{{ID: st.newID(), Group: staff.ID}}
		st.Cardholders[ch.ID] = ch
	}
	return st
}

// fix fills the maps a loaded state file may lack.
func (st *state) fix() {
	if st.Cardholders == nil {
		st.Cardholders = map[string]*cardholder{}
	}
	if st.Held == nil {
		st.Held = map[string]string{}
	}
}

func find[T interface{ id() string }](xs []T, id string) T {
	var zero T
	for _, x := range xs {
		if x.id() == id {
			return x
		}
	}
	return zero
}

func (i *item) id() string     { return i.ID }
func (c *cardType) id() string { return c.ID }
func (p *pdfDef) id() string   { return p.ID }

// sortedCardholders returns the cardholders by ID (creation order).
func (st *state) sortedCardholders() []*cardholder {
	out := make([]*cardholder, 0, len(st.Cardholders))
	for _, c := range st.Cardholders {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].ID, out[j].ID) })
	return out
}

// name is how the API shows a cardholder's name.
func (c *cardholder) name() string { return strings.TrimSpace(c.FirstName + " " + c.LastName) }

// clone returns a deep copy, for atomic edits.
func (c *cardholder) clone() *cardholder {
	d := *c
	d.PDFs = map[string]string{}
	for k, v := range c.PDFs {
		d.PDFs[k] = v
	}
	d.Cards = nil
	for _, x := range c.Cards {
		y := *x
		d.Cards = append(d.Cards, &y)
	}
	d.Memberships = nil
	for _, x := range c.Memberships {
		y := *x
		d.Memberships = append(d.Memberships, &y)
	}
	return &d
}

// statusType derives a card's status type from its status and validity.
func statusType(c *card, now time.Time) string {
	if c.Status != "Active" {
		return "inactive"
	}
	if t, err := time.Parse(time.RFC3339, c.From); err == nil && now.Before(t) {
		return "pending"
	}
	if t, err := time.Parse(time.RFC3339, c.Until); err == nil && !now.Before(t) {
		return "expired"
	}
	return "active"
}

// appendChange records a change of cardholder id in the feed.
func (st *state) appendChange(max int, now time.Time, typ, id string, old, new map[string]any) {
	st.ChangeSeq++
	st.Changes = append(st.Changes, change{Seq: st.ChangeSeq, Time: now, Type: typ, Item: id, OldValues: old, NewValues: new})
	if len(st.Changes) > max {
		st.Changes = append([]change(nil), st.Changes[len(st.Changes)-max:]...)
	}
}

// time5s returns a random lag of up to 5 s.
func time5s(rng *rand.Rand) time.Duration { return time.Duration(rng.Int64N(int64(5 * time.Second))) }
