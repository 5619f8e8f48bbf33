package xmlcmd

import (
	"encoding/xml"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// commands are the API's commands by name. Each runs with s.mu held.
var commands = map[string]func(s *Server, c *command, now time.Time) result{
	"Login":                 (*Server).login,
	"Logout":                (*Server).logout,
	"AddPerson":             (*Server).addPerson,
	"ModifyPerson":          (*Server).modifyPerson,
	"RemovePerson":          (*Server).removePerson,
	"GetPerson":             (*Server).getPerson,
	"SearchPersonData":      (*Server).searchPersonData,
	"AddCredential":         (*Server).addCredential,
	"ModifyCredential":      (*Server).modifyCredential,
	"RemoveCredential":      (*Server).removeCredential,
	"GetCardFormats":        (*Server).getCardFormats,
	"GetAccessLevels":       (*Server).getAccessLevels,
	"GetPortals":            (*Server).getPortals,
	"LockPortal":            func(s *Server, c *command, now time.Time) result { return s.portalCmd(c, now, "lock") },
	"UnlockPortal":          func(s *Server, c *command, now time.Time) result { return s.portalCmd(c, now, "unlock") },
	"MomentaryUnlockPortal": func(s *Server, c *command, now time.Time) result { return s.portalCmd(c, now, "momentary") },
	"GetAccessHistory":      (*Server).getAccessHistory,
}

// Date formats: dates are the site's local time with no offset.
const (
	dateLayout     = "01/02/2006"
	dateTimeLayout = "01/02/2006 15:04"
	dttmLayout     = "2006-01-02 15:04:05"
)

func (s *Server) parseDate(v string) (time.Time, error) {
	for _, l := range []string{dateLayout, dateTimeLayout} {
		if t, err := time.ParseInLocation(l, v, s.cfg.Location); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("date %q: want MM/DD/YYYY or MM/DD/YYYY HH:MM (site local time)", v)
}

func (s *Server) formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.In(s.cfg.Location)
	if t.Hour() == 0 && t.Minute() == 0 {
		return t.Format(dateLayout)
	}
	return t.Format(dateTimeLayout)
}

type loginDetails struct{ sessionID string }

func (s *Server) login(c *command, now time.Time) result {
	u, _ := c.param("USERNAME")
	p, _ := c.param("PASSWORD")
	if u != s.cfg.Username || p != s.cfg.Password {
		return failf(Fail, "Login failed: wrong user name or password")
	}
	s.logins++
	id := fmt.Sprintf("%016x", s.rng.Uint64())
	s.sessions[id] = now
	return result{code: Success, details: loginDetails{sessionID: id}}
}

func (s *Server) logout(c *command, now time.Time) result {
	delete(s.sessions, c.SessionID)
	return ok(nil)
}

var (
	personIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:{}@-]{1,64}$`)
	udfRE      = regexp.MustCompile(`^UDF([1-9]|1[0-9]|20)$`)
)

// personFields applies the writable person fields of c to p.
func (s *Server) personFields(p *person, c *command, add bool) (result, bool) {
	names := slices.Sorted(maps.Keys(c.Params))
	for _, name := range names {
		n := c.Params[name]
		v := n.text()
		switch {
		case name == "PERSONID":
		case name == "FIRSTNAME" || name == "LASTNAME" || name == "MIDDLENAME":
			if len(v) > 64 {
				return failf(Fail, "%s is longer than 64 characters", name), false
			}
			if name == "FIRSTNAME" {
				p.First = v
			} else if name == "LASTNAME" {
				p.Last = v
			}
		case name == "ACTDATE" || name == "EXPDATE":
			var t time.Time
			if v != "" {
				var err error
				if t, err = s.parseDate(v); err != nil {
					return failf(Fail, "%s: %v", name, err), false
				}
			}
			if name == "ACTDATE" {
				p.ActDate = t
			} else {
				p.ExpDate = t
			}
		case udfRE.MatchString(name):
			if len(v) > 255 {
				return failf(Fail, "%s is longer than 255 characters", name), false
			}
			if v == "" {
				delete(p.UDF, name)
			} else {
				p.UDF[name] = v
			}
		case name == "DELETED" && !add:
			switch strings.ToUpper(v) {
			case "TRUE":
				p.Deleted = true
			case "FALSE":
				p.Deleted = false
			default:
				return failf(Fail, "DELETED must be TRUE or FALSE, not %q", v), false
			}
		case name == "ACCESSLEVELS":
			changes, err := accessLevels(n)
			if err != nil {
				return failf(Fail, "ACCESSLEVELS: %v", err), false
			}
			if len(changes) == 0 || !changes[0].Block {
				// A plain list replaces every level; an empty one removes them all.
				p.Levels = nil
			}
			for _, lc := range changes {
				if !s.st.hasLevel(lc.Name) {
					return failf(NotFound, "Access level not found: %s", lc.Name), false
				}
				p.Levels = slices.DeleteFunc(p.Levels, func(x string) bool { return x == lc.Name })
				if !lc.Delete {
					p.Levels = append(p.Levels, lc.Name)
				}
			}
			if len(p.Levels) > 32 {
				return failf(Fail, "a person can hold at most 32 access levels"), false
			}
		default:
			return failf(Fail, "unknown parameter %s", name), false
		}
	}
	if p.Last == "" {
		return failf(Fail, "LASTNAME is required"), false
	}
	if !p.ActDate.IsZero() && !p.ExpDate.IsZero() && p.ExpDate.Before(p.ActDate) {
		return failf(Fail, "EXPDATE is before ACTDATE"), false
	}
	return result{}, true
}

type personIDOut struct {
	XMLName  xml.Name `xml:"PERSONID"`
	PersonID string   `xml:",chardata"`
}

func (s *Server) addPerson(c *command, now time.Time) result {
	id, given := c.param("PERSONID")
	if !given || id == "" {
		// The caller may choose; otherwise the system numbers.
		id = fmt.Sprintf("_%d", s.st.NextKey)
	}
	if !personIDRE.MatchString(id) {
		return failf(Fail, "PERSONID %q: want 1 to 64 letters, digits or _.:{}@-", id)
	}
	if _, dup := s.st.People[id]; dup {
		return failf(Duplicate, "Duplicate PERSONID %s", id)
	}
	p := &person{PersonID: id, UDF: map[string]string{}}
	if r, good := s.personFields(p, c, true); !good {
		return r
	}
	p.Key, p.LastMod = s.st.NextKey, now
	s.st.NextKey++
	s.st.People[id] = p
	return result{code: Success, details: personIDOut{PersonID: id}, commit: true}
}

// lookup returns the person named by c's PERSONID.
func (s *Server) lookup(c *command) (*person, result, bool) {
	id, _ := c.param("PERSONID")
	if id == "" {
		return nil, failf(Fail, "PERSONID is required"), false
	}
	p := s.st.People[id]
	if p == nil {
		return nil, failf(NotFound, "Person not found: %s", id), false
	}
	return p, result{}, true
}

func (s *Server) modifyPerson(c *command, now time.Time) result {
	old, r, good := s.lookup(c)
	if !good {
		return r
	}
	p := *old // applied to a copy: a failure changes nothing
	p.UDF = map[string]string{}
	for k, v := range old.UDF {
		p.UDF[k] = v
	}
	p.Levels = slices.Clone(old.Levels)
	if r, good := s.personFields(&p, c, false); !good {
		return r
	}
	p.LastMod = now
	*old = p
	return result{code: Success, commit: true}
}

func (s *Server) removePerson(c *command, now time.Time) result {
	p, r, good := s.lookup(c)
	if !good {
		return r
	}
	p.Deleted, p.LastMod = true, now
	return result{code: Success, commit: true}
}

type elemOut struct {
	XMLName xml.Name
	Text    string `xml:",chardata"`
}

type cardOut struct {
	EncodedNum string `xml:"ENCODEDNUM"`
	Hotstamp   string `xml:"HOTSTAMP"`
	CardFormat string `xml:"CARDFORMAT"`
	CardStatus string `xml:"CARDSTATUS"`
	Disabled   string `xml:"DISABLED"`
}

type personOut struct {
	XMLName      xml.Name  `xml:"PERSON"`
	PersonID     string    `xml:"PERSONID"`
	FirstName    string    `xml:"FIRSTNAME"`
	LastName     string    `xml:"LASTNAME"`
	ActDate      string    `xml:"ACTDATE"`
	ExpDate      string    `xml:"EXPDATE"`
	UDFs         []elemOut `xml:",omitempty"`
	Deleted      string    `xml:"DELETED"`
	LastMod      string    `xml:"LASTMOD"`
	AccessLevels []string  `xml:"ACCESSLEVELS>ACCESSLEVEL"`
	Cards        []cardOut `xml:"ACCESSCARDS>ACCESSCARD"`
}

func tf(b bool) string {
	if b {
		return "TRUE"
	}
	return "FALSE"
}

func (s *Server) render(p *person) personOut {
	o := personOut{PersonID: p.PersonID, FirstName: p.First, LastName: p.Last,
		ActDate: s.formatDate(p.ActDate), ExpDate: s.formatDate(p.ExpDate), Deleted: tf(p.Deleted),
		LastMod: p.LastMod.In(s.cfg.Location).Format(dttmLayout), AccessLevels: p.Levels}
	for i := 1; i <= 20; i++ {
		k := "UDF" + strconv.Itoa(i)
		if v, ok := p.UDF[k]; ok {
			o.UDFs = append(o.UDFs, elemOut{XMLName: xml.Name{Local: k}, Text: v})
		}
	}
	for _, x := range p.Cards {
		d := "0"
		if x.Disabled {
			d = "1"
		}
		o.Cards = append(o.Cards, cardOut{EncodedNum: x.EncodedNum, Hotstamp: x.Hotstamp, CardFormat: x.Format, CardStatus: x.Status, Disabled: d})
	}
	return o
}

func (s *Server) getPerson(c *command, now time.Time) result {
	p, r, good := s.lookup(c)
	if !good {
		return r
	}
	return ok(s.render(p))
}

type peopleOut struct {
	XMLName xml.Name    `xml:"PEOPLE"`
	People  []personOut `xml:"PERSON"`
}

// pageOut is a listing page and its cursor; NEXTKEY is -1 on the last.
type pageOut struct {
	XMLName xml.Name
	Items   any
	NextKey int64 `xml:"NEXTKEY"`
}

// MarshalXML writes the items and the NEXTKEY side by side in DETAILS.
func (p pageOut) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.Encode(p.Items); err != nil {
		return err
	}
	return e.EncodeElement(p.NextKey, xml.StartElement{Name: xml.Name{Local: "NEXTKEY"}})
}

// searchPersonData lists people by key from STARTFROMKEY, a page at a
// time; NEXTKEY is the key to start the next page from, or -1.
func (s *Server) searchPersonData(c *command, now time.Time) result {
	var from int64
	if v, given := c.param("STARTFROMKEY"); given && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return failf(Fail, "STARTFROMKEY %q: want a key from a previous NEXTKEY, or 0", v)
		}
		from = n
	}
	last, _ := c.param("LASTNAME")
	for name := range c.Params {
		if name != "STARTFROMKEY" && name != "LASTNAME" {
			return failf(Fail, "unknown parameter %s", name)
		}
	}
	out := peopleOut{}
	next := int64(-1)
	for _, p := range s.st.sorted() {
		if p.Key < from || last != "" && !strings.EqualFold(p.Last, last) {
			continue
		}
		if len(out.People) == s.cfg.PageSize {
			next = p.Key
			break
		}
		out.People = append(out.People, s.render(p))
	}
	if len(out.People) == 0 {
		return failf(NotFound, "no people found")
	}
	return ok(pageOut{Items: out, NextKey: next})
}

// credentialOf finds c's ENCODEDNUM and CARDFORMAT among p's cards.
func (s *Server) credentialOf(p *person, c *command) (*credential, result, bool) {
	num, _ := c.param("ENCODEDNUM")
	f, _ := c.param("CARDFORMAT")
	for _, x := range p.Cards {
		if x.EncodedNum == num && x.Format == f {
			return x, result{}, true
		}
	}
	return nil, failf(NotFound, "Credential not found: %s (%s) of %s", num, f, p.PersonID), false
}

// cardFields applies CARDSTATUS, DISABLED and HOTSTAMP of c to x.
func (s *Server) cardFields(x *credential, c *command) (result, bool) {
	if v, given := c.param("CARDSTATUS"); given {
		if !slices.Contains(s.st.Statuses, v) {
			return failf(Fail, "Card status does not exist: %s", v), false
		}
		x.Status = v
	}
	if v, given := c.param("DISABLED"); given {
		switch v {
		case "0":
			x.Disabled = false
		case "1":
			x.Disabled = true
		default:
			return failf(Fail, "DISABLED must be 0 or 1, not %q", v), false
		}
	}
	if v, given := c.param("HOTSTAMP"); given {
		if len(v) > 32 {
			return failf(Fail, "HOTSTAMP is longer than 32 characters"), false
		}
		x.Hotstamp = v
	}
	return result{}, true
}

func checkCardParams(c *command, allowed ...string) (result, bool) {
	for name := range c.Params {
		if !slices.Contains(allowed, name) {
			return failf(Fail, "unknown parameter %s", name), false
		}
	}
	return result{}, true
}

func (s *Server) addCredential(c *command, now time.Time) result {
	if r, good := checkCardParams(c, "PERSONID", "ENCODEDNUM", "HOTSTAMP", "CARDFORMAT", "CARDSTATUS", "DISABLED"); !good {
		return r
	}
	p, r, good := s.lookup(c)
	if !good {
		return r
	}
	fname, _ := c.param("CARDFORMAT")
	f := s.st.format(fname)
	if f == nil {
		return failf(NotFound, "Card format not found: %q", fname)
	}
	num, hasNum := c.param("ENCODEDNUM")
	hot, _ := c.param("HOTSTAMP")
	if num == "" && hot == "" {
		return failf(Fail, "ENCODEDNUM or HOTSTAMP is required")
	}
	if !hasNum || num == "" {
		num = hot
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > f.Max {
		return failf(Fail, "Encoded number %q is not valid for %s (0 to %d)", num, f.Name, f.Max)
	}
	num = strconv.FormatInt(n, 10)
	for _, o := range s.st.People {
		for _, x := range o.Cards {
			if x.Format == f.Name && x.EncodedNum == num {
				return failf(Duplicate, "Duplicate credential %s (%s)", num, f.Name)
			}
		}
	}
	x := &credential{EncodedNum: num, Format: f.Name, Status: "Active"}
	if r, good := s.cardFields(x, c); !good {
		return r
	}
	p.Cards = append(p.Cards, x)
	p.LastMod = now
	return result{code: Success, commit: true}
}

func (s *Server) modifyCredential(c *command, now time.Time) result {
	if r, good := checkCardParams(c, "PERSONID", "ENCODEDNUM", "HOTSTAMP", "CARDFORMAT", "CARDSTATUS", "DISABLED"); !good {
		return r
	}
	p, r, good := s.lookup(c)
	if !good {
		return r
	}
	x, r, good := s.credentialOf(p, c)
	if !good {
		return r
	}
	y := *x
	if r, good := s.cardFields(&y, c); !good {
		return r
	}
	*x = y
	p.LastMod = now
	return result{code: Success, commit: true}
}

func (s *Server) removeCredential(c *command, now time.Time) result {
	if r, good := checkCardParams(c, "PERSONID", "ENCODEDNUM", "CARDFORMAT"); !good {
		return r
	}
	p, r, good := s.lookup(c)
	if !good {
		return r
	}
	x, r, good := s.credentialOf(p, c)
	if !good {
		return r
	}
	p.Cards = slices.DeleteFunc(p.Cards, func(y *credential) bool { return y == x })
	p.LastMod = now
	return result{code: Success, commit: true}
}

type formatsOut struct {
	XMLName xml.Name `xml:"CARDFORMATS"`
	Formats []struct {
		Name string `xml:"NAME"`
		Bits int    `xml:"BITS"`
	} `xml:"CARDFORMAT"`
}

func (s *Server) getCardFormats(c *command, now time.Time) result {
	var o formatsOut
	for _, f := range s.st.Formats {
		o.Formats = append(o.Formats, struct {
			Name string `xml:"NAME"`
			Bits int    `xml:"BITS"`
		}{f.Name, f.Bits})
	}
	return ok(o)
}

type levelsOut struct {
	XMLName xml.Name `xml:"ACCESSLEVELS"`
	Levels  []struct {
		Key  int64  `xml:"ACCESSLEVELKEY"`
		Name string `xml:"ACCESSLEVELNAME"`
	} `xml:"ACCESSLEVEL"`
}

func (s *Server) getAccessLevels(c *command, now time.Time) result {
	var o levelsOut
	for _, l := range s.st.Levels {
		o.Levels = append(o.Levels, struct {
			Key  int64  `xml:"ACCESSLEVELKEY"`
			Name string `xml:"ACCESSLEVELNAME"`
		}{l.Key, l.Name})
	}
	return ok(pageOut{Items: o, NextKey: -1})
}

type portalsOut struct {
	XMLName xml.Name    `xml:"PORTALS"`
	Portals []portalOut `xml:"PORTAL"`
}

type portalOut struct {
	Key     int64  `xml:"PORTALKEY"`
	Name    string `xml:"NAME"`
	Locked  string `xml:"LOCKED"`
	Readers []struct {
		Key  int64  `xml:"READERKEY"`
		Name string `xml:"NAME"`
	} `xml:"READERS>READER"`
}

func (s *Server) getPortals(c *command, now time.Time) result {
	var o portalsOut
	for _, p := range s.st.Portals {
		po := portalOut{Key: p.Key, Name: p.Name, Locked: tf(p.Locked)}
		for _, r := range p.Readers {
			po.Readers = append(po.Readers, struct {
				Key  int64  `xml:"READERKEY"`
				Name string `xml:"NAME"`
			}{r.Key, r.Name})
		}
		o.Portals = append(o.Portals, po)
	}
	return ok(pageOut{Items: o, NextKey: -1})
}

func (s *Server) portalCmd(c *command, now time.Time, what string) result {
	v, _ := c.param("PORTALKEY")
	k, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return failf(Fail, "PORTALKEY %q: want a portal key", v)
	}
	p := s.st.portal(k)
	if p == nil {
		return failf(NotFound, "Portal not found: %s", v)
	}
	e := accessEvent{Time: now, Portal: p.Key, Reader: p.Readers[0].Name, Type: "30"}
	switch what {
	case "lock":
		if p.Locked {
			return failf(Fail, "Portal state not changed")
		}
		p.Locked, e.Description = true, "Portal locked by API"
	case "unlock":
		if !p.Locked {
			return failf(Fail, "Portal state not changed")
		}
		p.Locked, e.Description = false, "Portal unlocked by API"
	default:
		e.Description = "Portal momentarily unlocked by API"
	}
	s.st.appendEvent(s.cfg.EventLog, e)
	return result{code: Success, commit: true}
}

type accessOut struct {
	LogID       int64  `xml:"LOGID"`
	PersonID    string `xml:"PERSONID"`
	Reader      string `xml:"READER"`
	PortalKey   int64  `xml:"PORTALKEY"`
	DTTM        string `xml:"DTTM"`
	Type        string `xml:"TYPE"`
	Reason      string `xml:"REASON"`
	Description string `xml:"DESCNAME"`
}

type accessesOut struct {
	XMLName  xml.Name    `xml:"ACCESSES"`
	Accesses []accessOut `xml:"ACCESS"`
}

const maxRecords = 1000

// getAccessHistory returns up to MAXRECORDS records with LOGID above
// AFTERLOGID, oldest first. The log is a ring: when AFTERLOGID has been
// overwritten, the first LOGID returned is more than AFTERLOGID+1, and
// that jump is the only sign of the gap.
func (s *Server) getAccessHistory(c *command, now time.Time) result {
	var after int64
	if v, given := c.param("AFTERLOGID"); given && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return failf(Fail, "AFTERLOGID %q: want a LOGID or 0", v)
		}
		after = n
	}
	limit := 100
	if v, given := c.param("MAXRECORDS"); given && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRecords {
			return failf(Fail, "MAXRECORDS %q: want 1 to %d", v, maxRecords)
		}
		limit = n
	}
	o := accessesOut{}
	for _, e := range s.st.Events {
		if e.LogID <= after {
			continue
		}
		if len(o.Accesses) == limit {
			break
		}
		o.Accesses = append(o.Accesses, accessOut{LogID: e.LogID, PersonID: e.PersonID, Reader: e.Reader, PortalKey: e.Portal,
			DTTM: e.Time.In(s.cfg.Location).Format(dttmLayout), Type: e.Type, Reason: e.Reason, Description: e.Description})
	}
	if len(o.Accesses) == 0 {
		return failf(NotFound, "no access history after %d", after)
	}
	return ok(o)
}
