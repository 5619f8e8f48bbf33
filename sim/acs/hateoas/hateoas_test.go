package hateoas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sim/acs"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// client speaks to the simulator over real HTTP, knowing only /api.
type client struct {
	t    *testing.T
	srv  *Server
	base string
	auth string
	hc   *http.Client
}

// mustSim starts a simulator behind an httptest server.
func mustSim(t *testing.T, cfg Config) *client {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = acs.NewManualClock(t0).Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return &client{t: t, srv: s, base: hs.URL, auth: s.AuthHeader(), hc: hs.Client()}
}

// do sends a request and returns the status, headers and body.
func (c *client) do(method, url string, body any) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// get GETs url, wants 200, and decodes the body.
func (c *client) get(url string) map[string]any {
	c.t.Helper()
	code, _, b := c.do("GET", url, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s", url, code, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("GET %s: %v", url, err)
	}
	return m
}

// link follows a path of keys to an href in m.
func link(t *testing.T, m map[string]any, keys ...string) string {
	t.Helper()
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %v in %v", keys, m)
		}
		v = mm[k]
	}
	h, ok := v.(map[string]any)["href"].(string)
	if !ok {
		t.Fatalf("no href at %v", keys)
	}
	return h
}

// feature returns a link from the API root.
func (c *client) feature(keys ...string) string {
	return link(c.t, c.get(c.base+"/api"), append([]string{"features"}, keys...)...)
}

// all follows next links from url and returns every result.
func (c *client) all(url string) []map[string]any {
	var out []map[string]any
	for pages := 0; url != ""; pages++ {
		if pages > 1000 {
			c.t.Fatal("pagination does not end")
		}
		m := c.get(url)
		for _, r := range m["results"].([]any) {
			out = append(out, r.(map[string]any))
		}
		url = ""
		if n, ok := m["next"].(map[string]any); ok {
			url = n["href"].(string)
		}
	}
	return out
}

func (c *client) firstHref(coll ...string) string {
	res := c.all(c.feature(coll...))
	if len(res) == 0 {
		c.t.Fatalf("%v is empty", coll)
	}
	return res[0]["href"].(string)
}

// create POSTs a cardholder and returns its Location.
func (c *client) create(body map[string]any) string {
	c.t.Helper()
	code, h, b := c.do("POST", c.feature("cardholders", "cardholders"), body)
	if code != http.StatusCreated {
		c.t.Fatalf("POST cardholders = %d %s", code, b)
	}
	if len(b) != 0 {
		c.t.Errorf("POST cardholders answered a body: %s", b)
	}
	return h.Get("Location")
}

func (c *client) count() int { return len(c.all(c.feature("cardholders", "cardholders") + "?sort=id")) }

func TestWalkByLinks(t *testing.T) {
	c := mustSim(t, Config{Seed: 7, Cardholders: 11})
	root := c.get(c.base + "/api")
	chURL := link(t, root, "features", "cardholders", "cardholders")
	if strings.Contains(chURL, "/api/cardholders") {
		t.Errorf("cardholders href %s has no per-boot prefix", chURL)
	}
	if got := len(c.all(chURL + "?top=3")); got != 11 {
		t.Errorf("following next links found %d cardholders, want 11", got)
	}
	if got := len(c.all(chURL + "?top=4&sort=id")); got != 11 {
		t.Errorf("sort=id: %d cardholders, want 11", got)
	}
	div := c.firstHref("divisions", "divisions")
	ct := c.firstHref("cardTypes", "cardTypes")
	group := c.firstHref("accessGroups", "accessGroups")

	loc := c.create(map[string]any{"firstName": "Ada", "lastName": "Lovelace", "division": map[string]any{"href": div},
		"@Email": "ada@example.com", "cards": []any{map[string]any{"type": map[string]any{"href": ct}, "number": "4242"}}})
	got := c.get(loc)
	if got["lastName"] != "Lovelace" || got["authorised"] != false || got["@Email"] != "ada@example.com" {
		t.Errorf("created cardholder = %v", got)
	}
	cards := got["cards"].([]any)
	if len(cards) != 1 || cards[0].(map[string]any)["number"] != "4242" {
		t.Fatalf("cards = %v", cards)
	}
	cardHref := cards[0].(map[string]any)["href"].(string)

	t.Run("Update", func(t *testing.T) {
		code, _, b := c.do("PATCH", loc, map[string]any{
			"lastName": "King", "authorised": true,
			"cards":        map[string]any{"add": []any{map[string]any{"type": map[string]any{"href": ct}}}},
			"accessGroups": map[string]any{"add": []any{map[string]any{"accessGroup": map[string]any{"href": group}}}},
		})
		if code != http.StatusNoContent {
			t.Fatalf("PATCH = %d %s", code, b)
		}
		got := c.get(loc)
		if got["lastName"] != "King" || got["authorised"] != true || len(got["cards"].([]any)) != 2 || len(got["accessGroups"].([]any)) != 1 {
			t.Errorf("after PATCH: %v", got)
		}
		if n := got["cards"].([]any)[1].(map[string]any)["number"]; n == "" || n == nil {
			t.Errorf("a card added without a number got none")
		}
	})
	t.Run("ErrCardNumberImmutable", func(t *testing.T) {
		code, _, b := c.do("PATCH", loc, map[string]any{"firstName": "Changed",
			"cards": map[string]any{"update": []any{map[string]any{"href": cardHref, "number": "4243"}}}})
		if code != http.StatusBadRequest || !strings.Contains(string(b), "cannot be changed") {
			t.Errorf("number change = %d %s, want 400 cannot be changed", code, b)
		}
		got := c.get(loc)
		if got["firstName"] != "Ada" || got["cards"].([]any)[0].(map[string]any)["number"] != "4242" {
			t.Errorf("a refused PATCH changed the cardholder: %v", got)
		}
		// The same number, with a status change, is fine.
		code, _, b = c.do("PATCH", loc, map[string]any{"cards": map[string]any{"update": []any{
			map[string]any{"href": cardHref, "number": "4242", "status": map[string]any{"value": "Lost"}}}}})
		if code != http.StatusNoContent {
			t.Errorf("status change = %d %s", code, b)
		}
		st := c.get(loc)["cards"].([]any)[0].(map[string]any)["status"].(map[string]any)
		if st["value"] != "Lost" || st["type"] != "inactive" {
			t.Errorf("status = %v", st)
		}
	})
	t.Run("ErrCardNumberInUse", func(t *testing.T) {
		code, _, b := c.do("POST", chURL, map[string]any{"lastName": "Dup", "division": map[string]any{"href": div},
			"cards": []any{map[string]any{"type": map[string]any{"href": ct}, "number": "4242"}}})
		if code != http.StatusBadRequest || !strings.Contains(string(b), "in use") {
			t.Errorf("duplicate card number = %d %s", code, b)
		}
	})
	t.Run("MembershipHrefsChange", func(t *testing.T) {
		m := c.get(loc)["accessGroups"].([]any)[0].(map[string]any)["href"].(string)
		if code, _, b := c.do("PATCH", loc, map[string]any{"description": "x"}); code != http.StatusNoContent {
			t.Fatalf("PATCH = %d %s", code, b)
		}
		code, _, b := c.do("PATCH", loc, map[string]any{"accessGroups": map[string]any{"remove": []any{map[string]any{"href": m}}}})
		if code != http.StatusBadRequest || !strings.Contains(string(b), "membership") {
			t.Errorf("stale membership href = %d %s, want 400", code, b)
		}
		if code, _, _ := c.do("GET", cardHref, nil); code != http.StatusNotFound {
			t.Errorf("GET card href = %d, want 404", code)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		n := c.count()
		if code, _, b := c.do("DELETE", loc, nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %s", code, b)
		}
		if code, _, _ := c.do("GET", loc, nil); code != http.StatusNotFound {
			t.Errorf("GET deleted = %d", code)
		}
		if got := c.count(); got != n-1 {
			t.Errorf("count %d after delete, want %d", got, n-1)
		}
	})
	t.Run("ErrBuiltPath", func(t *testing.T) {
		if code, _, _ := c.do("GET", c.base+"/api/cardholders", nil); code != http.StatusNotFound {
			t.Errorf("a hard-coded path = %d, want 404", code)
		}
	})
}

func TestCreateIsNotIdempotent(t *testing.T) {
	c := mustSim(t, Config{})
	body := map[string]any{"firstName": "Same", "lastName": "Person", "division": map[string]any{"href": c.firstHref("divisions", "divisions")}}
	a, b := c.create(body), c.create(body)
	if a == b {
		t.Fatalf("two POSTs gave one Location %s", a)
	}
	if got := c.count(); got != 2 {
		t.Errorf("%d cardholders after two identical POSTs, want 2", got)
	}
	// The vendor's advice: a unique personal data field makes the retry fail.
	body["@Email"] = "same@example.com"
	c.create(body)
	if code, _, msg := c.do("POST", c.feature("cardholders", "cardholders"), body); code != http.StatusBadRequest || !strings.Contains(string(msg), "unique") {
		t.Errorf("second POST with the same unique PDF = %d %s", code, msg)
	}
	pdfs := c.all(c.feature("personalDataFields", "personalDataFields"))
	found := c.all(c.feature("cardholders", "cardholders") + "?pdf_" + pdfs[0]["id"].(string) + "=%22same@example.com%22")
	if len(found) != 1 {
		t.Errorf("search by unique PDF found %d", len(found))
	}
}

// pollEvents sends GET events/updates and delivers the decoded reply.
func (c *client) pollEvents(url string) <-chan map[string]any {
	ch := make(chan map[string]any, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", c.auth)
		resp, err := c.hc.Do(req)
		if err != nil {
			ch <- map[string]any{"error": err.Error()}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		m["status"] = resp.StatusCode
		ch <- m
	}()
	return ch
}

func TestLongPoll(t *testing.T) {
	waiting := make(chan struct{}, 10)
	c := mustSim(t, Config{Cardholders: 2, LongPoll: time.Hour, OnWait: func() { waiting <- struct{}{} }})
	updates := c.feature("events", "updates")
	t.Run("ReturnsOnEvent", func(t *testing.T) {
		res := c.pollEvents(updates)
		<-waiting // parked
		door := c.all(c.feature("doors", "doors"))[0]
		detail := c.get(door["href"].(string))
		if code, _, b := c.do("POST", link(t, detail, "commands", "open"), nil); code != http.StatusNoContent {
			t.Fatalf("open = %d %s", code, b)
		}
		m := <-res
		evs, _ := m["events"].([]any)
		if len(evs) != 1 || !strings.Contains(evs[0].(map[string]any)["message"].(string), door["name"].(string)) {
			t.Fatalf("long poll returned %v", m)
		}
		// The next updates link waits for what comes after.
		res = c.pollEvents(link(t, m, "updates"))
		<-waiting
		c.srv.Faults().Inject(3)
		if m := <-res; len(m["events"].([]any)) != 3 {
			t.Errorf("second poll returned %v", m)
		}
	})
	t.Run("TimesOut", func(t *testing.T) {
		c := mustSim(t, Config{LongPoll: 20 * time.Millisecond})
		m := <-c.pollEvents(c.feature("events", "updates"))
		if m["status"] != 200 || len(m["events"].([]any)) != 0 || m["updates"] == nil {
			t.Errorf("timed-out long poll = %v, want an empty page with an updates link", m)
		}
	})
	t.Run("Events", func(t *testing.T) {
		c.srv.Faults().Inject(5)
		m := c.get(c.feature("events", "events") + "?top=2")
		if len(m["events"].([]any)) != 2 {
			t.Fatalf("events page = %v", m)
		}
		seen := 2
		for next := link(t, m, "next"); ; {
			p := c.get(next)
			if len(p["events"].([]any)) == 0 {
				break
			}
			seen += len(p["events"].([]any))
			next = link(t, p, "next")
		}
		if seen != 1+3+5 {
			t.Errorf("walked %d events, want 9", seen)
		}
	})
}

func TestChangeFeed(t *testing.T) {
	c := mustSim(t, Config{})
	feed := c.feature("cardholders", "changes")
	m := c.get(feed)
	if len(m["results"].([]any)) != 0 {
		t.Fatalf("first call = %v, want a bookmark only", m)
	}
	b1 := link(t, m, "next")
	again := c.get(b1)
	if link(t, again, "next") == b1 {
		t.Errorf("bookmark did not rotate without changes")
	}
	loc := c.create(map[string]any{"lastName": "Echo", "division": map[string]any{"href": c.firstHref("divisions", "divisions")}})
	c.do("PATCH", loc, map[string]any{"firstName": "Eve"})
	m = c.get(link(t, again, "next"))
	res := m["results"].([]any)
	if len(res) != 2 {
		t.Fatalf("changes = %v, want the add and the update (own writes echoed)", res)
	}
	u := res[1].(map[string]any)
	if u["type"] != "update" || u["newValues"].(map[string]any)["firstName"] != "Eve" || link(t, u, "item") != loc {
		t.Errorf("update change = %v", u)
	}
	if code, _, _ := c.do("GET", feed+"?pos=zz", nil); code != http.StatusBadRequest {
		t.Errorf("bad bookmark = %d", code)
	}
}

func TestFaults(t *testing.T) {
	mc := acs.NewManualClock(t0)
	c := mustSim(t, Config{Seed: 3, Now: mc.Now})
	f := c.srv.Faults()
	div := c.firstHref("divisions", "divisions")
	chURL := c.feature("cardholders", "cardholders")
	body := map[string]any{"lastName": "Fault", "division": map[string]any{"href": div}}
	t.Run("DropAfterCommit", func(t *testing.T) {
		f.Set(acs.FaultConfig{Drop: 1})
		req, _ := http.NewRequest("POST", chURL, strings.NewReader(`{"lastName":"Lost","division":{"href":"`+div+`"}}`))
		req.Header.Set("Authorization", c.auth)
		if resp, err := c.hc.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("dropped reply arrived: %d", resp.StatusCode)
		}
		f.Set(acs.FaultConfig{Drop: 1, DropMode: acs.Drop502})
		if code, _, _ := c.do("POST", chURL, body); code != http.StatusBadGateway {
			t.Errorf("502 mode = %d", code)
		}
		// Reads commit nothing, so they are never dropped.
		c.get(chURL)
		f.Set(acs.FaultConfig{})
		if got := c.count(); got != 2 {
			t.Errorf("%d cardholders after two lost replies, want 2: the changes were saved", got)
		}
		if got := f.Counts().Dropped; got != 2 {
			t.Errorf("dropped = %d", got)
		}
	})
	t.Run("Throttle", func(t *testing.T) {
		n := c.count()
		f.Set(acs.FaultConfig{Throttle: 1})
		code, h, b := c.do("POST", chURL, body)
		f.Set(acs.FaultConfig{})
		if code != http.StatusTooManyRequests || h.Get("Retry-After") != "" || !strings.Contains(string(b), "message") {
			t.Errorf("throttled = %d %v %s", code, h, b)
		}
		if c.count() != n {
			t.Errorf("a throttled POST created a cardholder")
		}
	})
	t.Run("AuthFail", func(t *testing.T) {
		f.Set(acs.FaultConfig{AuthFail: 1})
		code, _, _ := c.do("GET", chURL, nil)
		f.Set(acs.FaultConfig{})
		if code != http.StatusUnauthorized {
			t.Errorf("auth fault = %d", code)
		}
		c.get(chURL) // the key still works
	})
	t.Run("KeyRevoked", func(t *testing.T) {
		detail := f.ExpireAuth()
		if code, _, _ := c.do("GET", chURL, nil); code != http.StatusUnauthorized {
			t.Errorf("old key = %d, want 401", code)
		}
		if !strings.Contains(detail, c.srv.APIKey()) {
			t.Errorf("ExpireAuth said %q, not the new key", detail)
		}
		c.auth = c.srv.AuthHeader()
		c.get(chURL)
	})
	t.Run("Operator", func(t *testing.T) {
		feed := link(t, c.get(c.feature("cardholders", "changes")), "next")
		before := c.all(chURL + "?sort=id")
		d := f.Operate()
		if d == "" {
			t.Fatal("operator did nothing")
		}
		res := c.get(feed)["results"].([]any)
		if len(res) != 1 {
			t.Fatalf("operator edit (%s) shows as %v in the change feed", d, res)
		}
		after := c.all(chURL + "?sort=id")
		changed := len(after) != len(before)
		for i := range after {
			if !changed && fmt.Sprint(after[i]) != fmt.Sprint(before[i]) {
				changed = true
			}
		}
		if !changed {
			t.Errorf("operator %q changed nothing visible", d)
		}
	})
	t.Run("Skew", func(t *testing.T) {
		f.Set(acs.FaultConfig{Skew: acs.Duration(-90 * time.Second)})
		defer f.Set(acs.FaultConfig{})
		_, h, _ := c.do("GET", chURL, nil)
		got, err := http.ParseTime(h.Get("Date"))
		if err != nil || !got.Equal(t0.Add(-90*time.Second)) {
			t.Errorf("Date = %s (%v), want %s", h.Get("Date"), err, t0.Add(-90*time.Second))
		}
	})
	t.Run("Admin", func(t *testing.T) {
		code, _, b := c.do("PUT", c.base+"/_sim/faults", `{"throttle":0.5}`)
		if code != 200 || f.Config().Throttle != 0.5 {
			t.Errorf("PUT /_sim/faults = %d %s", code, b)
		}
		if code, _, _ := c.do("PUT", c.base+"/_sim/faults", `{"throttle":2}`); code != 400 || f.Config().Throttle != 0.5 {
			t.Errorf("bad fault config = %d", code)
		}
		c.do("PUT", c.base+"/_sim/faults", `{"throttle":0}`)
		var st struct{ Counts acs.FaultCounts }
		_, _, b = c.do("GET", c.base+"/_sim/faults", nil)
		if json.Unmarshal(b, &st); st.Counts.Dropped != 2 || st.Counts.OperatorEdits != 1 {
			t.Errorf("counts = %+v", st.Counts)
		}
	})
}

func TestErrorsChangeNothing(t *testing.T) {
	c := mustSim(t, Config{Cardholders: 1})
	chURL := c.feature("cardholders", "cardholders")
	div := c.firstHref("divisions", "divisions")
	one := c.all(chURL)[0]["href"].(string)
	before := fmt.Sprint(c.get(one))
	for _, tc := range []struct {
		name, method, url string
		body              any
		code              int
		want              string
	}{
		{"ErrMalformedJSON", "POST", chURL, `{"lastName": "x",`, 400, "malformed JSON"},
		{"ErrNotObject", "POST", chURL, `[1,2]`, 400, "malformed JSON"},
		{"ErrUnknownField", "POST", chURL, `{"lastName":"x","division":{"href":"` + div + `"},"shoeSize":42}`, 400, "unknown field"},
		{"ErrNoDivision", "POST", chURL, `{"lastName":"x"}`, 400, "division"},
		{"ErrNoName", "POST", chURL, `{"division":{"href":"` + div + `"}}`, 400, "name"},
		{"ErrUnknownDivision", "POST", chURL, `{"lastName":"x","division":{"href":"` + div + `zz"}}`, 400, "division"},
		{"ErrUnknownPDF", "POST", chURL, `{"lastName":"x","division":{"href":"` + div + `"},"@Shoe":"9"}`, 400, "personal data"},
		{"ErrTooLarge", "POST", chURL, `{"lastName":"` + strings.Repeat("x", acs.MaxBody) + `"}`, 413, "larger"},
		{"ErrUnknownID", "PATCH", chURL + "/nope", `{"lastName":"y"}`, 404, "not found"},
		{"ErrUnknownIDDelete", "DELETE", chURL + "/nope", nil, 404, "not found"},
		{"ErrPatchMalformed", "PATCH", one, `{"lastName":`, 400, "malformed"},
		{"ErrPatchBadGroup", "PATCH", one, `{"lastName":"Z","accessGroups":{"add":[{"accessGroup":{"href":"http://x/api/q/access_groups/zz"}}]}}`, 400, "href"},
		{"ErrPatchBadCardRange", "PATCH", one, `{"lastName":"Z","cards":{"add":[{"type":{"href":"` + c.firstHref("cardTypes", "cardTypes") + `"},"number":"99999999"}]}}`, 400, "out of range"},
		{"ErrPatchBadDate", "PATCH", one, `{"lastName":"Z","accessGroups":{"add":[{"accessGroup":{"href":"` + c.firstHref("accessGroups", "accessGroups") + `"},"until":"tomorrow"}]}}`, 400, "RFC 3339"},
		{"ErrPatchTooLarge", "PATCH", one, `{"description":"` + strings.Repeat("x", acs.MaxBody) + `"}`, 413, "larger"},
		{"ErrNoAuth", "GET", chURL, nil, 401, "GGL-API-KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.count()
			auth := c.auth
			if tc.code == 401 {
				c.auth = "ggl-api-key " + strings.TrimPrefix(auth, "GGL-API-KEY ") // case matters
			}
			code, _, b := c.do(tc.method, tc.url, tc.body)
			c.auth = auth
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("%s = %d %s, want %d %q", tc.name, code, b, tc.code, tc.want)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil || m["message"] == "" {
				t.Errorf("error body %s is not {\"message\":…}", b)
			}
			if c.count() != n || fmt.Sprint(c.get(one)) != before {
				t.Errorf("a refused request changed the state")
			}
		})
	}
}

func TestOperatorLock(t *testing.T) {
	c := mustSim(t, Config{Cardholders: 1})
	h := c.all(c.feature("cardholders", "cardholders"))[0]
	c.srv.HoldOpen(h["id"].(string), "jsmith")
	code, _, b := c.do("PATCH", h["href"].(string), map[string]any{"lastName": "X"})
	if code != http.StatusConflict || !strings.Contains(string(b), "jsmith") {
		t.Errorf("PATCH of a held cardholder = %d %s", code, b)
	}
	c.srv.Release(h["id"].(string))
	if code, _, b := c.do("PATCH", h["href"].(string), map[string]any{"lastName": "X"}); code != http.StatusNoContent {
		t.Errorf("after release = %d %s", code, b)
	}
}

func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c := mustSim(t, Config{StatePath: path})
	loc := c.create(map[string]any{"lastName": "Kept", "division": map[string]any{"href": c.firstHref("divisions", "divisions")}})
	id := loc[strings.LastIndex(loc, "/")+1:]
	if err := c.srv.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := mustSim(t, Config{StatePath: path})
	got := c2.all(c2.feature("cardholders", "cardholders"))
	if len(got) != 1 || got[0]["id"] != id {
		t.Errorf("after restart: %v", got)
	}
	if got[0]["href"] == loc {
		t.Errorf("href unchanged across boots: %s (the prefix should change)", loc)
	}
}

func TestServe(t *testing.T) {
	s, err := New(Config{LongPoll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := newListener()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- acs.Serve(ctx, ln, s) }()
	c := &client{t: t, srv: s, base: "http://" + ln.Addr().String(), auth: s.AuthHeader(), hc: http.DefaultClient}
	res := c.pollEvents(c.feature("events", "updates"))
	cancel() // a parked long poll must not hold up the shutdown
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	<-res
}
