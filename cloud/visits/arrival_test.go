package visits_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/mail"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1/syncv1connect"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/replication"
	"github.com/gatehouse/gatehouse/syncwire"
)

// siteToken is the test site's sync credential.
const siteToken = "sync-token-of-the-test-site-0123"

// mustOpenSiteHub is MustOpenHub with the test site allowed to replicate
// (bearer token siteToken).
func mustOpenSiteHub(t testing.TB, dir, mailAddr string) *hub.Hub {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(dir, "store")
	cfg.SyncSites = []hub.SyncSite{{ID: string(siteID), Token: siteToken}}
	cfg.Mail = mail.Config{Addr: mailAddr, From: "Gatehouse <visits@gatehouse.test>", TLS: "none", Timeout: 5 * time.Second}
	cfg.Visits.RetryMin, cfg.Visits.RetryMax = 20*time.Millisecond, 300*time.Millisecond
	for role, key := range apiKeys {
		cfg.APIKeys = append(cfg.APIKeys, auth.Key{ID: string(role), SHA256: auth.HashKey(key), Role: role})
	}
	h := hub.New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// testSite makes deltas as the test site's Raft apply would: its own
// origin, sequence numbers per lane, stamps from its clock.
type testSite struct {
	w     *replication.Writer
	clock *replication.Clock
}

func newTestSite(t testing.TB) *testSite {
	t.Helper()
	w := must(replication.NewWriter(string(siteID), nil))
	c := must(replication.NewClock(string(siteID), 0, nil))
	return &testSite{w: w, clock: c}
}

// make returns the site's next delta.
func (s *testSite) make(t testing.TB, k replication.Kind, id string, ops ...replication.Op) replication.Delta {
	t.Helper()
	d, err := s.w.Make(s.clock.Now(), k, id, ops...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkIn returns the deltas of visit v's check-in at the site: the
// visit advanced, a card of the site's range bound to the guest with it.
func (s *testSite) checkIn(t testing.TB, v *visitv1.Visit, card string) []replication.Delta {
	t.Helper()
	return []replication.Delta{
		s.make(t, replication.KindVisit, v.GetId(), replication.AdvanceOp(access.VisitCheckedIn)),
		s.make(t, replication.KindCard, card, replication.SetOp("site", string(siteID)),
			replication.AddOp("holders", replication.HolderValue(access.ID(v.GetVisitorId()), access.ID(v.GetId())))),
	}
}

// push sends deltas of one lane to the hub's SyncService as the site's
// uplink would (Push, authenticated by the site's token).
func push(t testing.TB, h *hub.Hub, ds ...replication.Delta) {
	t.Helper()
	b, err := syncwire.BatchToWire(ds[0].Source(), ds)
	if err != nil {
		t.Fatal(err)
	}
	c := syncv1connect.NewSyncServiceClient(http.DefaultClient, "http://"+h.Addr())
	req := connect.NewRequest(&syncv1.PushRequest{Origin: string(siteID), Batch: b})
	req.Header().Set("Authorization", "Bearer "+siteToken)
	if _, err := c.Push(ctxT(t), req); err != nil {
		t.Fatalf("push: %v", err)
	}
}

// isArrival matches the arrival email of guest to addr.
func isArrival(addr, guest string) func(mail.Caught) bool {
	return func(m mail.Caught) bool {
		return len(m.To) == 1 && m.To[0] == addr && strings.Contains(m.Subject, guest+" has arrived")
	}
}

func countMatching(c *mail.Catcher, match func(mail.Caught) bool) int {
	n := 0
	for _, m := range c.Messages() {
		if match(m) {
			n++
		}
	}
	return n
}

func onSite(t *testing.T, h *hub.Hub) []*visitv1.Visit {
	t.Helper()
	res, err := client(h, auth.Host).ListVisits(ctxT(t), connect.NewRequest(&visitv1.ListVisitsRequest{SiteId: string(siteID), OnSite: true}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetVisits()
}

var pickupRE = regexp.MustCompile(`http://\S+/guest/\S+/pickup`)

// TestArrivalEmailFromSiteCheckIn: a check-in the site replicates through
// the SyncService makes the visit on site at the hub (with the site's time
// in), and the host gets one arrival email with the guest, the site, the
// time in (in the site's time zone) and a working pick-up link; the
// site's checkout takes the visit off the on-site list.
func TestArrivalEmailFromSiteCheckIn(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := mustOpenSiteHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	res := mustInvite(t, h, inviteReq("", nil, true, 2*time.Hour, guest("Anna", "Arrive"), guest("Otto", "Other")))
	v, other := res.GetVisits()[0], res.GetVisits()[1]
	mailTo(t, c, "anna@example.test")
	if got := onSite(t, h); len(got) != 0 {
		t.Fatalf("on site before any check-in: %v", got)
	}

	site := newTestSite(t)
	ds := site.checkIn(t, v, "4711001")
	push(t, h, ds...)
	m, err := c.Wait(ctxT(t), isArrival("bob@example.test", "Anna Arrive"))
	if err != nil {
		t.Fatal(err)
	}
	berlin := must(time.LoadLocation("Europe/Berlin"))
	timeIn := ds[0].Stamp.Time()
	for _, want := range []string{"Anna Arrive checked in at Demo HQ on " + timeIn.In(berlin).Format("Monday 2 January 2006 at 15:04 MST"), "must be escorted"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("arrival email lacks %q:\n%s", want, m.Text)
		}
	}
	if m.Subject != "Anna Arrive has arrived at Demo HQ" {
		t.Errorf("subject %q", m.Subject)
	}
	got := onSite(t, h)
	if len(got) != 1 || got[0].GetId() != v.GetId() || got[0].GetCheckedInMs() != timeIn.UnixMilli() {
		t.Fatalf("on site after the check-in: %v; want visit %s in at %d", got, v.GetId(), timeIn.UnixMilli())
	}

	link := pickupRE.FindString(m.Text)
	if link == "" {
		t.Fatalf("no pick-up link in:\n%s", m.Text)
	}
	p := get(t, link)
	if p.status != 200 {
		t.Fatalf("pick-up page: %d\n%s", p.status, p.body)
	}
	if st, body := postValues(t, link, url.Values{"form_token": {p.formToken(t)}}, nil); st != 200 {
		t.Fatalf("pick-up: %d\n%s", st, body)
	}
	if s := mustGet(t, h, v.GetId()).GetState(); s != visitv1.VisitState_VISIT_STATE_PICKED_UP {
		t.Fatalf("after the pick-up link: %v", s)
	}

	push(t, h, site.make(t, replication.KindVisit, v.GetId(), replication.AdvanceOp(access.VisitCheckedOut)))
	if got := onSite(t, h); len(got) != 0 {
		t.Errorf("on site after the site's checkout: %v", got)
	}
	after := waitVisit(t, h, v.GetId(), "arrival email sent", func(x *visitv1.Visit) bool {
		for _, e := range x.GetEmails() {
			if e.GetKind() == "arrival" && e.GetSent() {
				return true
			}
		}
		return false
	})
	if after.GetState() != visitv1.VisitState_VISIT_STATE_CHECKED_OUT {
		t.Errorf("state after checkout: %v", after.GetState())
	}
	if n := countMatching(c, isArrival("bob@example.test", "Anna Arrive")); n != 1 {
		t.Errorf("%d arrival emails, want 1", n)
	}
	if n := countMatching(c, isArrival("bob@example.test", "Otto Other")); n != 0 {
		t.Errorf("an arrival email for a guest who did not come")
	}
	if s := mustGet(t, h, other.GetId()).GetState(); s != visitv1.VisitState_VISIT_STATE_INVITED {
		t.Errorf("the other guest's visit: %v", s)
	}
}

// TestArrivalEmailOnceAcrossRestart: the arrival email queued while the
// relay is down is sent by the next hub process, once: the new process
// reads the check-in again and finds it announced.
func TestArrivalEmailOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	h := mustOpenSiteHub(t, dir, freeAddr(t))
	seedBuilding(t, h)
	res := mustInvite(t, h, inviteReq("", nil, false, 2*time.Hour, guest("Rosa", "Restart"), guest("Lena", "Later")))
	first, second := res.GetVisits()[0], res.GetVisits()[1]
	site := newTestSite(t)
	push(t, h, site.checkIn(t, first, "4711002")...)
	waitVisit(t, h, first.GetId(), "arrival email attempted", func(x *visitv1.Visit) bool {
		for _, e := range x.GetEmails() {
			if e.GetKind() == "arrival" && e.GetAttempts() >= 1 {
				return true
			}
		}
		return false
	})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	c := MustStartCatcher(t, "127.0.0.1:0")
	h2 := mustOpenSiteHub(t, dir, c.Addr())
	m, err := c.Wait(ctxT(t), isArrival("bob@example.test", "Rosa Restart"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "Their card opens the doors of the visit until") || strings.Contains(m.Text, "/pickup") {
		t.Errorf("arrival email of an unescorted visit:\n%s", m.Text)
	}
	// The watcher reads every check-in when it starts; once it has
	// announced a check-in made after the restart, it has been through
	// the first one again.
	push(t, h2, site.checkIn(t, second, "4711003")...)
	if _, err := c.Wait(ctxT(t), isArrival("bob@example.test", "Lena Later")); err != nil {
		t.Fatal(err)
	}
	if n := countMatching(c, isArrival("bob@example.test", "Rosa Restart")); n != 1 {
		t.Errorf("%d arrival emails for the first guest, want 1", n)
	}
	n := 0
	for _, e := range mustGet(t, h2, first.GetId()).GetEmails() {
		if e.GetKind() == "arrival" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d arrival emails queued for the first guest, want 1", n)
	}
}

// TestNoArrivalEmailForAVisitAlreadyOver: a visit the hub learns of only
// when it is over (the site was offline for the whole visit) gets no
// arrival email, and is not on site.
func TestNoArrivalEmailForAVisitAlreadyOver(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := mustOpenSiteHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	res := mustInvite(t, h, inviteReq("", nil, false, 2*time.Hour, guest("Wanda", "Wanless"), guest("Paul", "Present")))
	over, present := res.GetVisits()[0], res.GetVisits()[1]
	site := newTestSite(t)
	in := site.checkIn(t, over, "4711004")
	out := site.make(t, replication.KindVisit, over.GetId(), replication.AdvanceOp(access.VisitCheckedOut))
	// The WAN comes back: the priority lane (the checkout) first, then
	// the rest, as the uplink sends them.
	push(t, h, out)
	push(t, h, in...)
	push(t, h, site.checkIn(t, present, "4711005")...)
	if _, err := c.Wait(ctxT(t), isArrival("bob@example.test", "Paul Present")); err != nil {
		t.Fatal(err)
	}
	if n := countMatching(c, isArrival("bob@example.test", "Wanda Wanless")); n != 0 {
		t.Errorf("%d arrival emails for a visit already over", n)
	}
	v := mustGet(t, h, over.GetId())
	if v.GetState() != visitv1.VisitState_VISIT_STATE_CHECKED_OUT || v.GetCheckedInMs() != in[0].Stamp.Time().UnixMilli() {
		t.Errorf("the visit over: %v", v)
	}
	if got := onSite(t, h); len(got) != 1 || got[0].GetId() != present.GetId() {
		t.Errorf("on site: %v", got)
	}
}
