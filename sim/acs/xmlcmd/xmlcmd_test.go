package xmlcmd

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sim/acs"
)

var t0 = time.Date(2026, 1, 15, 15, 0, 0, 0, time.UTC) // 10:00 in New York

type client struct {
	t       *testing.T
	srv     *Server
	clock   *acs.ManualClock
	url     string
	hc      *http.Client
	session string
}

func mustSim(t *testing.T, cfg Config) *client {
	t.Helper()
	mc := acs.NewManualClock(t0)
	cfg.Now = mc.Now
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	c := &client{t: t, srv: s, clock: mc, url: hs.URL, hc: hs.Client()}
	c.login()
	return c
}

// resp is a decoded reply.
type resp struct {
	SessionID string `xml:"sessionid,attr"`
	Response  struct {
		Command  string `xml:"command,attr"`
		APIError int    `xml:"APIERROR"`
		Code     string `xml:"CODE"`
		Details  struct {
			ErrMsg   string      `xml:"ERRMSG"`
			PersonID string      `xml:"PERSONID"`
			Person   personOut   `xml:"PERSON"`
			People   []personOut `xml:"PEOPLE>PERSON"`
			NextKey  int64       `xml:"NEXTKEY"`
			Accesses []accessOut `xml:"ACCESSES>ACCESS"`
			Portals  []portalOut `xml:"PORTALS>PORTAL"`
		} `xml:"DETAILS"`
	} `xml:"RESPONSE"`
	status int
	raw    string
}

// post sends raw as the APIcommand form field.
func (c *client) post(raw string) (*resp, error) {
	r, err := c.hc.PostForm(c.url+Path, url.Values{"APIcommand": {raw}})
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	out := &resp{status: r.StatusCode, raw: string(b)}
	if r.StatusCode == 200 {
		if err := xml.Unmarshal(b, out); err != nil {
			c.t.Fatalf("reply %s: %v", b, err)
		}
	}
	return out, nil
}

// call sends one command with params (inner XML) in the current session.
func (c *client) call(name, params string) *resp {
	c.t.Helper()
	r, err := c.post(fmt.Sprintf(`<NETBOX-API sessionid='%s'><COMMAND name='%s' num='1'><PARAMS>%s</PARAMS></COMMAND></NETBOX-API>`, c.session, name, params))
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	if r.status != 200 {
		c.t.Fatalf("%s: HTTP %d %s", name, r.status, r.raw)
	}
	return r
}

func (c *client) must(name, params string) *resp {
	c.t.Helper()
	r := c.call(name, params)
	if r.Response.Code != Success {
		c.t.Fatalf("%s = %s %d %s", name, r.Response.Code, r.Response.APIError, r.Response.Details.ErrMsg)
	}
	return r
}

func (c *client) login() {
	c.t.Helper()
	u, p := c.srv.Credentials()
	r := c.call("Login", "<USERNAME>"+u+"</USERNAME><PASSWORD>"+p+"</PASSWORD>")
	if r.Response.Code != Success || r.SessionID == "" {
		c.t.Fatalf("Login = %s", r.raw)
	}
	c.session = r.SessionID
}

func (c *client) person(id string) personOut {
	c.t.Helper()
	return c.must("GetPerson", "<PERSONID>"+id+"</PERSONID>").Response.Details.Person
}

func TestSessions(t *testing.T) {
	c := mustSim(t, Config{SessionIdle: 10 * time.Minute})
	c.must("GetPortals", "")
	c.clock.Advance(9 * time.Minute)
	c.must("GetPortals", "") // use renews the session
	c.clock.Advance(10 * time.Minute)
	r := c.call("GetPortals", "")
	if r.status != 200 || r.Response.APIError != APIErrAuth || r.Response.Code != "" {
		t.Fatalf("idle session = HTTP %d %s, want 200 with APIERROR 5", r.status, r.raw)
	}
	if c.srv.Sessions() != 0 {
		t.Errorf("expired session still counted")
	}
	c.login()
	c.must("GetPortals", "")
	c.must("Logout", "")
	if r := c.call("GetPortals", ""); r.Response.APIError != APIErrAuth {
		t.Errorf("after Logout = %s", r.raw)
	}
	c.session = ""
	if r := c.call("Login", "<USERNAME>admin</USERNAME><PASSWORD>wrong</PASSWORD>"); r.Response.Code != Fail || r.SessionID != "" {
		t.Errorf("wrong password = %s", r.raw)
	}
}

func TestPersons(t *testing.T) {
	c := mustSim(t, Config{})
	r := c.must("AddPerson", "<PERSONID>ext-42</PERSONID><FIRSTNAME>Ada</FIRSTNAME><LASTNAME>Lovelace</LASTNAME><ACTDATE>01/15/2026</ACTDATE><EXPDATE>12/31/2026 18:30</EXPDATE><UDF1>E42</UDF1><ACCESSLEVELS><ACCESSLEVEL>Lobby 24x7</ACCESSLEVEL></ACCESSLEVELS>")
	if r.Response.Details.PersonID != "ext-42" {
		t.Errorf("AddPerson PERSONID = %q", r.Response.Details.PersonID)
	}
	p := c.person("ext-42")
	if p.ExpDate != "12/31/2026 18:30" || p.ActDate != "01/15/2026" || p.LastMod != "2026-01-15 10:00:00" || p.Deleted != "FALSE" {
		t.Errorf("dates and flags = %+v, want site-local text with no offset", p)
	}
	if !strings.Contains(c.call("GetPerson", "<PERSONID>ext-42</PERSONID>").raw, "<UDF1>E42</UDF1>") {
		t.Errorf("UDF1 missing")
	}
	t.Run("DuplicatePersonID", func(t *testing.T) {
		r := c.call("AddPerson", "<PERSONID>ext-42</PERSONID><LASTNAME>Other</LASTNAME>")
		if r.status != 200 || r.Response.Code != Duplicate {
			t.Errorf("reused PERSONID = %d %s", r.status, r.raw)
		}
		if c.person("ext-42").LastName != "Lovelace" {
			t.Errorf("DUPLICATE changed the person")
		}
	})
	t.Run("AccessLevelsReplace", func(t *testing.T) {
		levels := func() []string { return c.person("ext-42").AccessLevels }
		c.must("ModifyPerson", "<PERSONID>ext-42</PERSONID><ACCESSLEVELS><ACCESSLEVEL>Floor 1 Business Hours</ACCESSLEVEL></ACCESSLEVELS>")
		if got := levels(); !slices.Equal(got, []string{"Floor 1 Business Hours"}) {
			t.Errorf("a plain list did not replace: %v", got)
		}
		c.must("ModifyPerson", "<PERSONID>ext-42</PERSONID><ACCESSLEVELS><ACCESSLEVEL><ACCESSLEVELNAME>Server Room</ACCESSLEVELNAME></ACCESSLEVEL></ACCESSLEVELS>")
		if got := levels(); !slices.Equal(got, []string{"Floor 1 Business Hours", "Server Room"}) {
			t.Errorf("a block did not add: %v", got)
		}
		c.must("ModifyPerson", "<PERSONID>ext-42</PERSONID><ACCESSLEVELS><ACCESSLEVEL><ACCESSLEVELNAME>Floor 1 Business Hours</ACCESSLEVELNAME><DELETE>1</DELETE></ACCESSLEVEL></ACCESSLEVELS>")
		if got := levels(); !slices.Equal(got, []string{"Server Room"}) {
			t.Errorf("a DELETE block did not remove: %v", got)
		}
		r := c.call("ModifyPerson", "<PERSONID>ext-42</PERSONID><LASTNAME>Changed</LASTNAME><ACCESSLEVELS><ACCESSLEVEL>No Such Level</ACCESSLEVEL></ACCESSLEVELS>")
		if r.Response.Code != NotFound || c.person("ext-42").LastName != "Lovelace" || !slices.Equal(levels(), []string{"Server Room"}) {
			t.Errorf("unknown level = %s; the person must not change", r.raw)
		}
		c.must("ModifyPerson", "<PERSONID>ext-42</PERSONID><ACCESSLEVELS></ACCESSLEVELS>")
		if got := levels(); len(got) != 0 {
			t.Errorf("an empty list left %v", got)
		}
	})
	t.Run("Credentials", func(t *testing.T) {
		c.must("AddCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT>")
		c.must("AddPerson", "<PERSONID>ext-43</PERSONID><LASTNAME>Two</LASTNAME>")
		if r := c.call("AddCredential", "<PERSONID>ext-43</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT>"); r.Response.Code != Duplicate {
			t.Errorf("a taken card number = %s", r.raw)
		}
		if r := c.call("ModifyCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT><CARDSTATUS>Melted</CARDSTATUS>"); r.Response.Code != Fail || !strings.Contains(r.raw, "Card status does not exist") {
			t.Errorf("unknown status = %s", r.raw)
		}
		c.must("ModifyCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT><DISABLED>1</DISABLED>")
		if cards := c.person("ext-42").Cards; len(cards) != 1 || cards[0].Disabled != "1" || cards[0].CardStatus != "Active" {
			t.Errorf("cards = %+v", cards)
		}
		if r := c.call("AddCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>70000</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT>"); r.Response.Code != Fail {
			t.Errorf("out-of-range number = %s", r.raw)
		}
		c.must("RemoveCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT>")
		if r := c.call("RemoveCredential", "<PERSONID>ext-42</PERSONID><ENCODEDNUM>1234</ENCODEDNUM><CARDFORMAT>26 bit Wiegand</CARDFORMAT>"); r.Response.Code != NotFound {
			t.Errorf("removing twice = %s", r.raw)
		}
	})
	t.Run("SoftDelete", func(t *testing.T) {
		c.must("RemovePerson", "<PERSONID>ext-43</PERSONID>")
		if p := c.person("ext-43"); p.Deleted != "TRUE" {
			t.Errorf("RemovePerson: DELETED = %s, want a soft delete", p.Deleted)
		}
		if r := c.call("AddPerson", "<PERSONID>ext-43</PERSONID><LASTNAME>Again</LASTNAME>"); r.Response.Code != Duplicate {
			t.Errorf("a soft-deleted ID reused = %s", r.raw)
		}
	})
}

func TestPagingEndsAtMinusOne(t *testing.T) {
	c := mustSim(t, Config{People: 10, PageSize: 3})
	seen := map[string]bool{}
	key, pages := int64(0), 0
	for key != -1 {
		r := c.must("SearchPersonData", fmt.Sprintf("<STARTFROMKEY>%d</STARTFROMKEY>", key))
		for _, p := range r.Response.Details.People {
			if seen[p.PersonID] {
				t.Errorf("%s seen twice", p.PersonID)
			}
			seen[p.PersonID] = true
		}
		key = r.Response.Details.NextKey
		if pages++; pages > 10 {
			t.Fatal("NEXTKEY never reached -1")
		}
	}
	if len(seen) != 10 || pages != 4 {
		t.Errorf("%d people in %d pages, want 10 in 4", len(seen), pages)
	}
	if r := c.call("SearchPersonData", "<STARTFROMKEY>abc</STARTFROMKEY>"); r.Response.Code != Fail {
		t.Errorf("bad key = %s", r.raw)
	}
}

func TestEventLogOverwrites(t *testing.T) {
	c := mustSim(t, Config{People: 2, EventLog: 5})
	history := func(after int64) []accessOut {
		r := c.call("GetAccessHistory", fmt.Sprintf("<AFTERLOGID>%d</AFTERLOGID><MAXRECORDS>100</MAXRECORDS>", after))
		return r.Response.Details.Accesses
	}
	c.srv.Faults().Inject(3)
	got := history(0)
	if len(got) != 3 || got[0].LogID != 1 || got[2].LogID != 3 {
		t.Fatalf("history = %+v", got)
	}
	if got[0].DTTM != "2026-01-15 10:00:00" {
		t.Errorf("DTTM = %q, want site-local time with no offset", got[0].DTTM)
	}
	last := got[2].LogID
	c.srv.Faults().Inject(10) // a slow poller: the ring (5) wraps
	got = history(last)
	if len(got) != 5 {
		t.Fatalf("%d records, want the ring's 5", len(got))
	}
	if gap := got[0].LogID - last - 1; gap != 5 {
		t.Errorf("first LOGID %d after %d: gap %d, want 5 lost records (4 to 8)", got[0].LogID, last, gap)
	}
	if r := c.call("GetAccessHistory", "<AFTERLOGID>13</AFTERLOGID>"); r.Response.Code != NotFound {
		t.Errorf("nothing new = %s", r.raw)
	}
}

func TestPortals(t *testing.T) {
	c := mustSim(t, Config{})
	ps := c.must("GetPortals", "").Response.Details.Portals
	if len(ps) == 0 || len(ps[0].Readers) == 0 {
		t.Fatalf("portals = %+v", ps)
	}
	k := fmt.Sprintf("<PORTALKEY>%d</PORTALKEY>", ps[0].Key)
	if r := c.call("LockPortal", k); r.Response.Code != Fail || !strings.Contains(r.raw, "Portal state not changed") {
		t.Errorf("locking a locked portal = %s", r.raw)
	}
	c.must("UnlockPortal", k)
	if h := c.must("GetAccessHistory", "").Response.Details.Accesses; len(h) != 1 {
		t.Errorf("unlock left %d history records", len(h))
	}
}

func TestFaults(t *testing.T) {
	c := mustSim(t, Config{Seed: 5, People: 3})
	f := c.srv.Faults()
	t.Run("DropAfterCommit", func(t *testing.T) {
		f.Set(acs.FaultConfig{Drop: 1})
		_, err := c.post(fmt.Sprintf(`<NETBOX-API sessionid='%s'><COMMAND name='AddPerson' num='1'><PARAMS><PERSONID>lost-1</PERSONID><LASTNAME>L</LASTNAME></PARAMS></COMMAND></NETBOX-API>`, c.session))
		if err == nil {
			t.Fatal("the reply arrived")
		}
		c.must("GetPerson", "<PERSONID>lost-1</PERSONID>") // reads are never dropped
		f.Set(acs.FaultConfig{})
		if r := c.call("AddPerson", "<PERSONID>lost-1</PERSONID><LASTNAME>L</LASTNAME>"); r.Response.Code != Duplicate {
			t.Errorf("the retry = %s, want DUPLICATE: the first was saved", r.raw)
		}
	})
	t.Run("Throttle", func(t *testing.T) {
		f.Set(acs.FaultConfig{Throttle: 1})
		r, err := c.hc.PostForm(c.url+Path, url.Values{"APIcommand": {"<NETBOX-API/>"}})
		f.Set(acs.FaultConfig{})
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "" {
			t.Errorf("throttled = %d %v", r.StatusCode, r.Header)
		}
	})
	t.Run("SessionsExpire", func(t *testing.T) {
		f.Set(acs.FaultConfig{AuthFail: 1})
		r := c.call("GetPortals", "")
		f.Set(acs.FaultConfig{})
		if r.Response.APIError != APIErrAuth {
			t.Errorf("auth fault = %s", r.raw)
		}
		if r := c.call("GetPortals", ""); r.Response.APIError != APIErrAuth {
			t.Errorf("the session came back: %s", r.raw)
		}
		c.login()
		c.must("GetPortals", "")
		f.ExpireAuth()
		if r := c.call("GetPortals", ""); r.Response.APIError != APIErrAuth {
			t.Errorf("after ExpireAuth = %s", r.raw)
		}
		c.login()
	})
	t.Run("Operator", func(t *testing.T) {
		before := c.call("SearchPersonData", "").raw
		if d := f.Operate(); d == "" {
			t.Fatal("operator did nothing")
		}
		if after := c.call("SearchPersonData", "").raw; after == before {
			t.Errorf("operator edit not visible")
		}
	})
	t.Run("Skew", func(t *testing.T) {
		f.Set(acs.FaultConfig{Skew: acs.Duration(time.Hour)})
		// The clock jumping an hour ahead idles the session out, as it would.
		if r := c.call("GetPortals", ""); r.Response.APIError != APIErrAuth {
			t.Errorf("session survived a 1h clock jump: %s", r.raw)
		}
		c.login()
		c.must("AddPerson", "<PERSONID>skewed</PERSONID><LASTNAME>S</LASTNAME>")
		f.Set(acs.FaultConfig{})
		if got := c.person("skewed").LastMod; got != "2026-01-15 11:00:00" {
			t.Errorf("LASTMOD under 1h skew = %s", got)
		}
	})
	if got := f.Counts(); got.Dropped != 1 || got.Throttled != 1 || got.AuthFailed != 1 || got.AuthExpired != 1 || got.OperatorEdits != 1 {
		t.Errorf("counts = %+v", got)
	}
}

func TestErrorsChangeNothing(t *testing.T) {
	c := mustSim(t, Config{People: 2})
	snapshot := func() string { return c.call("SearchPersonData", "").raw }
	before := snapshot()
	for _, tc := range []struct {
		name, body string
		apiErr     int
		code       string
	}{
		{"ErrMalformedXML", "<NETBOX-API><COMMAND name='AddPerson'><PARAMS><LASTNAME>x</PARAMS>", APIErrMalformed, ""},
		{"ErrNotXML", "{\"json\": true}", APIErrMalformed, ""},
		{"ErrTwoCommands", "<NETBOX-API sessionid='S'><COMMAND name='GetPortals'/><COMMAND name='GetPortals'/></NETBOX-API>", APIErrMalformed, ""},
		{"ErrTrailing", "<NETBOX-API sessionid='S'><COMMAND name='GetPortals'/></NETBOX-API><X/>", APIErrMalformed, ""},
		{"ErrDuplicateParam", "<NETBOX-API sessionid='S'><COMMAND name='AddPerson'><PARAMS><PERSONID>a</PERSONID><PERSONID>b</PERSONID><LASTNAME>x</LASTNAME></PARAMS></COMMAND></NETBOX-API>", APIErrMalformed, ""},
		{"ErrUnknownCommand", "<NETBOX-API sessionid='S'><COMMAND name='FormatDisk'/></NETBOX-API>", APIErrUnknown, ""},
		{"ErrNoSession", "<NETBOX-API><COMMAND name='AddPerson'><PARAMS><LASTNAME>x</LASTNAME></PARAMS></COMMAND></NETBOX-API>", APIErrAuth, ""},
		{"ErrUnknownPerson", "<NETBOX-API sessionid='S'><COMMAND name='ModifyPerson'><PARAMS><PERSONID>nobody</PERSONID><LASTNAME>x</LASTNAME></PARAMS></COMMAND></NETBOX-API>", 0, NotFound},
		{"ErrNoLastName", "<NETBOX-API sessionid='S'><COMMAND name='AddPerson'><PARAMS><PERSONID>p1</PERSONID></PARAMS></COMMAND></NETBOX-API>", 0, Fail},
		{"ErrBadDate", "<NETBOX-API sessionid='S'><COMMAND name='AddPerson'><PARAMS><PERSONID>p1</PERSONID><LASTNAME>x</LASTNAME><ACTDATE>2026-01-01</ACTDATE></PARAMS></COMMAND></NETBOX-API>", 0, Fail},
		{"ErrUnknownParam", "<NETBOX-API sessionid='S'><COMMAND name='AddPerson'><PARAMS><PERSONID>p1</PERSONID><LASTNAME>x</LASTNAME><SHOE>9</SHOE></PARAMS></COMMAND></NETBOX-API>", 0, Fail},
		{"ErrBadPersonID", "<NETBOX-API sessionid='S'><COMMAND name='AddPerson'><PARAMS><PERSONID>a b</PERSONID><LASTNAME>x</LASTNAME></PARAMS></COMMAND></NETBOX-API>", 0, Fail},
		{"ErrUnknownFormat", "<NETBOX-API sessionid='S'><COMMAND name='AddCredential'><PARAMS><PERSONID>SYN-00001</PERSONID><ENCODEDNUM>5</ENCODEDNUM><CARDFORMAT>Nope</CARDFORMAT></PARAMS></COMMAND></NETBOX-API>", 0, NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.post(strings.ReplaceAll(tc.body, "'S'", "'"+c.session+"'"))
			if err != nil {
				t.Fatal(err)
			}
			if r.status != 200 || r.Response.APIError != tc.apiErr || r.Response.Code != tc.code {
				t.Errorf("= HTTP %d %s, want APIERROR %d CODE %q", r.status, r.raw, tc.apiErr, tc.code)
			}
			if r.Response.Details.ErrMsg == "" {
				t.Errorf("no ERRMSG: %s", r.raw)
			}
		})
	}
	t.Run("ErrTooLarge", func(t *testing.T) {
		r, err := c.post("<NETBOX-API>" + strings.Repeat("x", acs.MaxBody) + "</NETBOX-API>")
		if err != nil || r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized = %v %v", r, err)
		}
	})
	t.Run("ErrLegacyPath", func(t *testing.T) {
		r, err := c.hc.Post(c.url+LegacyPath, "text/xml", strings.NewReader("<NETBOX-API/>"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusGone {
			t.Errorf("legacy path = %d, want 410", r.StatusCode)
		}
	})
	t.Run("RawXMLBody", func(t *testing.T) {
		r, err := c.hc.Post(c.url+Path, "text/xml", strings.NewReader("<NETBOX-API sessionid='"+c.session+"'><COMMAND name='GetCardFormats' num='1'/></NETBOX-API>"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if !strings.Contains(string(b), "26 bit Wiegand") {
			t.Errorf("GetCardFormats = %s", b)
		}
	})
	if after := snapshot(); after != before {
		t.Errorf("refused requests changed the state:\n%s\n%s", before, after)
	}
}

func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c := mustSim(t, Config{StatePath: path})
	c.must("AddPerson", "<PERSONID>kept</PERSONID><LASTNAME>K</LASTNAME>")
	c.srv.Close()
	c2 := mustSim(t, Config{StatePath: path})
	if got := c2.person("kept").LastName; got != "K" {
		t.Errorf("after restart: %q", got)
	}
}
