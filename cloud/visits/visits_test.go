package visits_test

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestInviteEmailQRAndPreCheckIn follows one escorted visit through the
// real hub: Connect invite → the invitation read from the SMTP server → the
// QR code decoded and its token verified with the published keys → the
// pre-check-in page over HTTP (name fixed, NDA, a document) → state
// pre_registered; then a site's check-in, the host's pick-up link, the
// on-site list and checkout, after which the guest's link is refused.
func TestInviteEmailQRAndPreCheckIn(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	vt := mustPutType(t, h, &visitv1.VisitorType{Name: "Contractor", AllowedProfileIds: []string{string(lobby), string(lab)},
		RequiredDocuments: []string{"Safety certificate"}, MaxDurationSeconds: 8 * 3600, EscortRequired: true})

	res := mustInvite(t, h, inviteReq(vt.GetId(), []string{string(lobby)}, true, 4*time.Hour, guest("Anna", "Mueler")))
	if len(res.GetVisits()) != 1 || len(res.GetPickupUrls()) != 1 {
		t.Fatalf("invite answered %v", res)
	}
	v := res.GetVisits()[0]
	if v.GetState() != visitv1.VisitState_VISIT_STATE_INVITED || !reflect.DeepEqual(v.GetProfileIds(), []string{string(lobby)}) || !v.GetEscort() {
		t.Errorf("invited visit: %v", v)
	}

	m := mailTo(t, c, "anna@example.test")
	if m.Subject != "Your visit to Demo HQ" || !strings.Contains(m.Text, "Bob Host") {
		t.Errorf("invitation: %q\n%s", m.Subject, m.Text)
	}
	token := qrToken(t, m)
	claims, err := ring(t, h).Verify(token, time.Now())
	if err != nil {
		t.Fatalf("token from the QR code: %v", err)
	}
	if string(claims.Visit) != v.GetId() || string(claims.Guest) != v.GetVisitorId() || string(claims.Site) != string(siteID) {
		t.Errorf("token claims %+v for visit %v", claims, v)
	}
	link := checkinLink(t, m)
	if !strings.HasSuffix(link, "/guest/"+token) {
		t.Errorf("check-in link %s does not carry the QR's token", link)
	}
	sent := waitVisit(t, h, v.GetId(), "invitation marked sent", func(v *visitv1.Visit) bool {
		return len(v.GetEmails()) == 2 && v.GetEmails()[0].GetSent() && v.GetEmails()[1].GetSent()
	})
	if got := sent.GetEmails()[0].GetMessageId(); got != m.ID {
		t.Errorf("Message-ID %q, the visit says %q", m.ID, got)
	}
	hostMail := mailTo(t, c, "bob@example.test")
	if !strings.Contains(hostMail.Text, res.GetPickupUrls()[0]) {
		t.Errorf("the host's email lacks the pick-up link:\n%s", hostMail.Text)
	}

	// The pre-check-in page: first without the document, then complete.
	p := get(t, link)
	if p.status != 200 || !strings.Contains(p.body, `value="Mueler"`) || !strings.Contains(p.body, "Safety certificate") {
		t.Fatalf("pre-check-in page %d:\n%s", p.status, p.body)
	}
	status, loc, body := postForm(t, link, map[string]string{"form_token": p.formToken(t), "given": "Anna", "family": "Müller", "nda": "accept"})
	if status != 303 || !strings.HasSuffix(loc, "?saved=1") {
		t.Fatalf("first post: %d %s\n%s", status, loc, body)
	}
	if v := mustGet(t, h, v.GetId()); v.GetState() != visitv1.VisitState_VISIT_STATE_INVITED || v.GetGuest().GetFamilyName() != "Müller" || v.GetNdaAcceptedMs() == 0 {
		t.Errorf("after name and NDA, without the document: %v", v)
	}
	// A document that is not a PDF, PNG or JPEG is refused, and nothing changes.
	before := h.State().Vector()
	status, _, body = postForm(t, link, map[string]string{"form_token": p.formToken(t), "given": "Anna", "family": "Müller", "nda": "accept"},
		file{"doc-0", "cert.html", []byte("<html><script>alert(1)</script></html>")})
	if status != 422 || !strings.Contains(body, "not accepted") {
		t.Errorf("an HTML document: %d\n%s", status, body)
	}
	if got := h.State().Vector(); !reflect.DeepEqual(got, before) {
		t.Errorf("a refused upload changed the replica")
	}
	status, _, body = postForm(t, link, map[string]string{"form_token": p.formToken(t), "given": "Anna", "family": "Müller", "nda": "accept"},
		file{"doc-0", "cert.png", pngBytes()})
	if status != 303 {
		t.Fatalf("complete post: %d\n%s", status, body)
	}
	v = mustGet(t, h, v.GetId())
	if v.GetState() != visitv1.VisitState_VISIT_STATE_PRE_REGISTERED || !reflect.DeepEqual(v.GetDocuments(), []string{"Safety certificate"}) {
		t.Errorf("after pre-check-in: %v", v)
	}
	if p := get(t, link+"?saved=1"); !strings.Contains(p.body, `id="complete"`) {
		t.Errorf("the page does not say the guest is pre-registered:\n%s", p.body)
	}
	// The name replicates in the form the kiosk splits.
	if name, _ := h.State().Facts().Field(replication.KindPerson, v.GetVisitorId(), "name"); name != "Müller, Anna" {
		t.Errorf("replicated name %q", name)
	}

	// The pick-up link: refused before the check-in, accepted after; the
	// guest's own token does not open it.
	pickup := res.GetPickupUrls()[0]
	if p := get(t, link+"/pickup"); p.status != 403 {
		t.Errorf("the guest's token on the pick-up page: %d", p.status)
	}
	pp := get(t, pickup)
	if pp.status != 200 || strings.Contains(pp.body, "form_token") {
		t.Errorf("pick-up page before check-in (%d) offers a form:\n%s", pp.status, pp.body)
	}
	siteCheckIn(t, h, v.GetId())
	pp = get(t, pickup)
	if st, body := postValues(t, pickup, url.Values{"form_token": {pp.formToken(t)}}, nil); st != 200 || !strings.Contains(body, "Pick-up confirmed") {
		t.Errorf("pick-up: %d\n%s", st, body)
	}
	list, err := client(h, auth.Security).ListVisits(ctxT(t), connect.NewRequest(&visitv1.ListVisitsRequest{SiteId: string(siteID), OnSite: true}))
	if err != nil {
		t.Fatal(err)
	}
	if vs := list.Msg.GetVisits(); len(vs) != 1 || vs[0].GetState() != visitv1.VisitState_VISIT_STATE_PICKED_UP || vs[0].GetCheckedInMs() == 0 || vs[0].GetHostId() != string(hostID) {
		t.Errorf("on site now: %v", vs)
	}

	// Checkout; the guest's link is now refused and changes nothing.
	if _, err := client(h, auth.Host).CheckOut(ctxT(t), connect.NewRequest(&visitv1.CheckOutRequest{VisitId: v.GetId()})); err != nil {
		t.Fatal(err)
	}
	before = h.State().Vector()
	if p := get(t, link); p.status != 410 || !strings.Contains(p.body, "checked out") {
		t.Errorf("the link after checkout: %d\n%s", p.status, p.body)
	}
	if st, _, _ := postForm(t, link, map[string]string{"form_token": p.formToken(t), "given": "Eve", "family": "Replay", "nda": "accept"}); st != 410 {
		t.Errorf("a replayed post after checkout: %d", st)
	}
	if st, _ := postValues(t, pickup, url.Values{"form_token": {pp.formToken(t)}}, nil); st != 410 {
		t.Errorf("a replayed pick-up after checkout: %d", st)
	}
	if got := h.State().Vector(); !reflect.DeepEqual(got, before) {
		t.Errorf("replayed links changed the replica")
	}
}

// TestBadTokensChangeNothing: tampered, expired, unknown-key and
// cross-origin requests get an error page and change nothing.
func TestBadTokensChangeNothing(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	res := mustInvite(t, h, inviteReq("", nil, false, 2*time.Hour, guest("Carl", "Gast")))
	v := res.GetVisits()[0]
	link := checkinLink(t, mailTo(t, c, "carl@example.test"))
	base, token, _ := strings.Cut(link, "/guest/")
	form := get(t, link).formToken(t)

	expired, err := h.Visits().Keys().Sign(access.TokenClaims{Visit: access.ID(v.GetId()), Site: siteID, Guest: access.ID(v.GetVisitorId()),
		NotBefore: time.Now().Add(-3 * time.Hour), Expires: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(token)
	i := len(tampered) / 2
	tampered[i] ^= 'A' ^ 'B'
	if tampered[i] == token[i] {
		tampered[i] = 'C'
	}
	before := h.State().Vector()
	for _, tc := range []struct {
		name, token string
		status      int
		says        string
	}{
		{"Tampered", string(tampered), 400, "not valid"},
		{"Expired", expired, 410, "expired"},
		{"Garbage", "GH1.nope", 400, "not valid"},
		{"TooLong", "GH1." + strings.Repeat("A", 600), 400, "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p := get(t, base+"/guest/"+tc.token); p.status != tc.status || !strings.Contains(p.body, tc.says) {
				t.Errorf("GET: %d\n%s", p.status, p.body)
			}
			st, _, _ := postForm(t, base+"/guest/"+tc.token, map[string]string{"form_token": form, "given": "Eve", "family": "Evil", "nda": "accept"})
			if st != tc.status {
				t.Errorf("POST: %d, want %d", st, tc.status)
			}
		})
	}
	t.Run("ErrCrossOrigin", func(t *testing.T) {
		st, body := postValues(t, link, url.Values{"form_token": {form}, "family": {"Evil"}}, map[string][]string{"Sec-Fetch-Site": {"cross-site"}})
		if st != 403 {
			t.Errorf("cross-site POST: %d\n%s", st, body)
		}
	})
	t.Run("ErrFormToken", func(t *testing.T) {
		st, _, _ := postForm(t, link, map[string]string{"form_token": "forged", "given": "Eve", "family": "Evil", "nda": "accept"})
		if st != 403 {
			t.Errorf("POST with a forged form token: %d", st)
		}
	})
	if got := h.State().Vector(); !reflect.DeepEqual(got, before) {
		t.Errorf("refused requests changed the replica")
	}
	if v := mustGet(t, h, v.GetId()); v.GetState() != visitv1.VisitState_VISIT_STATE_INVITED || v.GetGuest().GetFamilyName() != "Gast" {
		t.Errorf("visit after refused requests: %v", v)
	}
}

// TestInviteRules: an invitation breaking its visitor type's rules is
// refused with every broken rule named; roles are enforced.
func TestInviteRules(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), "127.0.0.1:1")
	seedBuilding(t, h)
	vt := mustPutType(t, h, &visitv1.VisitorType{Name: "Interview", AllowedProfileIds: []string{string(lobby)},
		MaxDurationSeconds: 2 * 3600, EscortRequired: true})
	_, err := client(h, auth.Host).Invite(ctxT(t), connect.NewRequest(inviteReq(vt.GetId(), []string{string(lobby), string(lab)}, false, 4*time.Hour, guest("Ida", "Int"))))
	if connectCode(err) != connect.CodePermissionDenied {
		t.Fatalf("rule violations: %v, want PermissionDenied", err)
	}
	for _, want := range []string{"profile " + string(lab) + " is not allowed", "longer than 2h0m0s", "must be escorted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	for _, tc := range []struct {
		name string
		req  *visitv1.InviteRequest
		code connect.Code
	}{
		{"ErrNoGuests", inviteReq(vt.GetId(), nil, true, time.Hour), connect.CodeInvalidArgument},
		{"ErrBadEmail", inviteReq(vt.GetId(), nil, true, time.Hour, &visitv1.Guest{FamilyName: "X", Email: "nope"}), connect.CodeInvalidArgument},
		{"ErrNoFamilyName", inviteReq(vt.GetId(), nil, true, time.Hour, &visitv1.Guest{GivenName: "X", Email: "x@example.test"}), connect.CodeInvalidArgument},
		{"ErrUnknownType", inviteReq("01JTYPE0000000000000000099", nil, true, time.Hour, guest("A", "B")), connect.CodeNotFound},
		{"ErrProfileOfAnotherSite", func() *visitv1.InviteRequest {
			r := inviteReq(vt.GetId(), []string{string(lobby)}, true, time.Hour, guest("A", "B"))
			r.SiteId = string(otherSit)
			return r
		}(), connect.CodeInvalidArgument},
		{"ErrUntypedWithProfiles", inviteReq("", []string{string(lobby)}, false, time.Hour, guest("A", "B")), connect.CodePermissionDenied},
		{"ErrWindowOver", func() *visitv1.InviteRequest {
			r := inviteReq(vt.GetId(), nil, true, time.Hour, guest("A", "B"))
			r.FromMs, r.UntilMs = time.Now().Add(-2*time.Hour).UnixMilli(), time.Now().Add(-time.Hour).UnixMilli()
			return r
		}(), connect.CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := client(h, auth.Host).Invite(ctxT(t), connect.NewRequest(tc.req)); connectCode(err) != tc.code {
				t.Errorf("%v, want %v", err, tc.code)
			}
		})
	}
	t.Run("ErrRoles", func(t *testing.T) {
		if _, err := client(h, "").ListVisits(ctxT(t), connect.NewRequest(&visitv1.ListVisitsRequest{})); connectCode(err) != connect.CodeUnauthenticated {
			t.Errorf("no key: %v", err)
		}
		if _, err := client(h, auth.Host).PutVisitorType(ctxT(t), connect.NewRequest(&visitv1.PutVisitorTypeRequest{VisitorType: &visitv1.VisitorType{Name: "X"}})); connectCode(err) != connect.CodePermissionDenied {
			t.Errorf("host puts a visitor type: %v", err)
		}
		if _, err := client(h, auth.Host).ListWatchEntries(ctxT(t), connect.NewRequest(&visitv1.ListWatchEntriesRequest{})); connectCode(err) != connect.CodePermissionDenied {
			t.Errorf("host reads the watchlist: %v", err)
		}
	})
	if res, err := client(h, auth.Host).ListVisits(ctxT(t), connect.NewRequest(&visitv1.ListVisitsRequest{})); err != nil || len(res.Msg.GetVisits()) != 0 {
		t.Errorf("refused invitations left visits: %v %v", res, err)
	}
	// Profiles added later are checked against the same rules.
	ok := mustInvite(t, h, inviteReq(vt.GetId(), []string{string(lobby)}, true, time.Hour, guest("Olga", "Ok"))).GetVisits()[0]
	if _, err := client(h, auth.Host).AddProfiles(ctxT(t), connect.NewRequest(&visitv1.AddProfilesRequest{VisitId: ok.GetId(), ProfileIds: []string{string(lab)}})); connectCode(err) != connect.CodePermissionDenied {
		t.Errorf("adding a profile the type does not allow: %v", err)
	}
	rm, err := client(h, auth.Security).RemoveProfiles(ctxT(t), connect.NewRequest(&visitv1.RemoveProfilesRequest{VisitId: ok.GetId(), ProfileIds: []string{string(lobby)}}))
	if err != nil || len(rm.Msg.GetVisit().GetProfileIds()) != 0 {
		t.Errorf("remove profiles: %v %v", rm, err)
	}
	add, err := client(h, auth.Host).AddProfiles(ctxT(t), connect.NewRequest(&visitv1.AddProfilesRequest{VisitId: ok.GetId(), ProfileIds: []string{string(lobby)}}))
	if err != nil || !reflect.DeepEqual(add.Msg.GetVisit().GetProfileIds(), []string{string(lobby)}) {
		t.Errorf("re-adding a removed profile: %v %v", add, err)
	}
}

// TestIdempotentInvite: a repeat with the same key returns the same visits
// and sends nothing again; the key with another request is refused.
func TestIdempotentInvite(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	req := inviteReq("", nil, false, time.Hour, guest("Dora", "Twice"), guest("Emil", "Twice"))
	req.IdempotencyKey = "hr-system-4711"
	first := mustInvite(t, h, req)
	for _, v := range first.GetVisits() {
		waitVisit(t, h, v.GetId(), "invitation sent", func(v *visitv1.Visit) bool { return len(v.GetEmails()) == 2 && v.GetEmails()[0].GetSent() })
	}
	again := mustInvite(t, h, req)
	if len(again.GetVisits()) != 2 || again.GetVisits()[0].GetId() != first.GetVisits()[0].GetId() || again.GetVisits()[1].GetId() != first.GetVisits()[1].GetId() ||
		!reflect.DeepEqual(again.GetPickupUrls(), first.GetPickupUrls()) {
		t.Errorf("repeat answered other visits:\n%v\n%v", first, again)
	}
	for _, v := range again.GetVisits() {
		if n := len(v.GetEmails()); n != 2 {
			t.Errorf("visit %s has %d emails after the repeat", v.GetId(), n)
		}
	}
	list, _ := client(h, auth.Host).ListVisits(ctxT(t), connect.NewRequest(&visitv1.ListVisitsRequest{HostId: string(hostID)}))
	if n := len(list.Msg.GetVisits()); n != 2 {
		t.Errorf("%d visits after a repeated invite, want 2", n)
	}
	if n := countTo(c, "dora@example.test"); n != 1 {
		t.Errorf("%d invitations to the guest, want 1", n)
	}
	other := inviteReq("", nil, false, time.Hour, guest("Fritz", "Other"))
	other.IdempotencyKey = req.IdempotencyKey
	if _, err := client(h, auth.Host).Invite(ctxT(t), connect.NewRequest(other)); connectCode(err) != connect.CodeAlreadyExists {
		t.Errorf("key reused with another request: %v", err)
	}
}

// TestWatchlistHoldAndDeny: a hold entry holds the visit for security (no
// email until released); a deny entry denies it at once.
func TestWatchlistHoldAndDeny(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	sec := client(h, auth.Security)
	for _, e := range []*visitv1.WatchEntry{
		{GivenNames: "Mallory", Surname: "Schmidt", Action: visitv1.WatchAction_WATCH_ACTION_HOLD, Reason: "check with legal"},
		{GivenNames: "Trudy", Surname: "Intruder", Action: visitv1.WatchAction_WATCH_ACTION_DENY, Reason: "banned 2025"},
	} {
		if _, err := sec.PutWatchEntry(ctxT(t), connect.NewRequest(&visitv1.PutWatchEntryRequest{Entry: e})); err != nil {
			t.Fatal(err)
		}
	}
	res := mustInvite(t, h, inviteReq("", nil, false, time.Hour, guest("Mallory", "Schmitt"), guest("Trudy", "Intruder"), guest("Otto", "Normal")))
	held, denied, normal := res.GetVisits()[0], res.GetVisits()[1], res.GetVisits()[2]
	if held.GetState() != visitv1.VisitState_VISIT_STATE_REQUESTED || !held.GetHeld() || !strings.Contains(held.GetHoldReason(), "check with legal") || len(held.GetEmails()) != 0 {
		t.Errorf("held visit: %v", held)
	}
	if denied.GetState() != visitv1.VisitState_VISIT_STATE_DENIED || len(denied.GetEmails()) != 0 {
		t.Errorf("denied visit: %v", denied)
	}
	if res.GetPickupUrls()[0] != "" || res.GetPickupUrls()[1] != "" {
		t.Errorf("pick-up links for held or denied visits: %q", res.GetPickupUrls())
	}
	mailTo(t, c, "otto@example.test")
	waitVisit(t, h, normal.GetId(), "sent", func(v *visitv1.Visit) bool { return v.GetEmails()[0].GetSent() })
	if n := countTo(c, "mallory@example.test") + countTo(c, "trudy@example.test"); n != 0 {
		t.Errorf("%d emails to watchlisted guests", n)
	}
	if _, err := client(h, auth.Host).ReleaseVisit(ctxT(t), connect.NewRequest(&visitv1.ReleaseVisitRequest{VisitId: held.GetId()})); connectCode(err) != connect.CodePermissionDenied {
		t.Errorf("a host releases a held visit: %v", err)
	}
	if _, err := sec.ReleaseVisit(ctxT(t), connect.NewRequest(&visitv1.ReleaseVisitRequest{VisitId: denied.GetId()})); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("releasing a denied visit: %v", err)
	}
	rel, err := sec.ReleaseVisit(ctxT(t), connect.NewRequest(&visitv1.ReleaseVisitRequest{VisitId: held.GetId()}))
	if err != nil || rel.Msg.GetVisit().GetState() != visitv1.VisitState_VISIT_STATE_INVITED || rel.Msg.GetVisit().GetHeld() {
		t.Fatalf("release: %v %v", rel, err)
	}
	mailTo(t, c, "mallory@example.test")
	// Security may still deny it; then it is final.
	dn, err := sec.DenyVisit(ctxT(t), connect.NewRequest(&visitv1.DenyVisitRequest{VisitId: held.GetId(), Reason: "legal said no"}))
	if err != nil || dn.Msg.GetVisit().GetState() != visitv1.VisitState_VISIT_STATE_DENIED {
		t.Fatalf("deny: %v %v", dn, err)
	}
	if _, err := client(h, auth.Host).CancelVisit(ctxT(t), connect.NewRequest(&visitv1.CancelVisitRequest{VisitId: held.GetId()})); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("cancelling a denied visit: %v", err)
	}
}

// TestOutboxSurvivesSMTPOutage: the SMTP server is down when the guest is
// invited; the invitation is sent once it is back, exactly once, with the
// Message-ID the visit shows.
func TestOutboxSurvivesSMTPOutage(t *testing.T) {
	addr := freeAddr(t)
	h := MustOpenHub(t, t.TempDir(), addr)
	seedBuilding(t, h)
	v := mustInvite(t, h, inviteReq("", nil, false, time.Hour, guest("Paula", "Patient"))).GetVisits()[0]
	failed := waitVisit(t, h, v.GetId(), "a failed attempt", func(v *visitv1.Visit) bool {
		return len(v.GetEmails()) > 0 && v.GetEmails()[0].GetAttempts() >= 2
	})
	if e := failed.GetEmails()[0]; e.GetSent() || e.GetFailed() || e.GetLastError() == "" {
		t.Errorf("while the server is down: %v", e)
	}
	c := MustStartCatcher(t, addr) // the same port: the relay is back
	m := mailTo(t, c, "paula@example.test")
	sent := waitVisit(t, h, v.GetId(), "sent", func(v *visitv1.Visit) bool { return v.GetEmails()[0].GetSent() })
	if m.ID != sent.GetEmails()[0].GetMessageId() {
		t.Errorf("Message-ID %q, the visit says %q", m.ID, sent.GetEmails()[0].GetMessageId())
	}
	if n := countTo(c, "paula@example.test"); n != 1 {
		t.Errorf("%d invitations caught, want 1", n)
	}
}

// TestOutboxSurvivesHubRestart: mail queued while the relay is unreachable
// is sent by the next hub process, and its token still verifies.
func TestOutboxSurvivesHubRestart(t *testing.T) {
	dir := t.TempDir()
	h := MustOpenHub(t, dir, freeAddr(t))
	seedBuilding(t, h)
	v := mustInvite(t, h, inviteReq("", nil, false, time.Hour, guest("Rita", "Restart"))).GetVisits()[0]
	waitVisit(t, h, v.GetId(), "a failed attempt", func(v *visitv1.Visit) bool { return v.GetEmails()[0].GetAttempts() >= 1 })
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	c := MustStartCatcher(t, "127.0.0.1:0")
	h2 := MustOpenHub(t, dir, c.Addr())
	m := mailTo(t, c, "rita@example.test")
	claims, err := ring(t, h2).Verify(qrToken(t, m), time.Now())
	if err != nil || string(claims.Visit) != v.GetId() {
		t.Fatalf("token after restart: %+v %v", claims, err)
	}
	waitVisit(t, h2, v.GetId(), "sent", func(v *visitv1.Visit) bool { return v.GetEmails()[0].GetSent() })
	if n := countTo(c, "rita@example.test"); n != 1 {
		t.Errorf("%d invitations caught, want 1", n)
	}
}

// TestTokenKeyRotation: after a rotation old tokens still verify; after a
// rotation that retires the old keys they are refused; the keys are
// published without a credential.
func TestTokenKeyRotation(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	mustInvite(t, h, inviteReq("", nil, false, time.Hour, guest("Kurt", "Keys")))
	link := checkinLink(t, mailTo(t, c, "kurt@example.test"))
	admin := client(h, auth.Admin)
	if _, err := admin.RotateTokenKey(ctxT(t), connect.NewRequest(&visitv1.RotateTokenKeyRequest{})); err != nil {
		t.Fatal(err)
	}
	if p := get(t, link); p.status != 200 {
		t.Errorf("an old key's token after a rotation: %d", p.status)
	}
	if _, err := client(h, auth.Host).RotateTokenKey(ctxT(t), connect.NewRequest(&visitv1.RotateTokenKeyRequest{})); connectCode(err) != connect.CodePermissionDenied {
		t.Errorf("a host rotates keys: %v", err)
	}
	if _, err := admin.RotateTokenKey(ctxT(t), connect.NewRequest(&visitv1.RotateTokenKeyRequest{RetireOld: true})); err != nil {
		t.Fatal(err)
	}
	if p := get(t, link); p.status != 410 {
		t.Errorf("a retired key's token: %d", p.status)
	}
	p := get(t, "http://"+h.Addr()+"/visits/token-keys")
	if p.status != 200 || strings.Count(p.body, `"key_id"`) != 3 || strings.Count(p.body, `"retired"`) != 2 || strings.Count(p.body, `"current":true`) != 1 {
		t.Errorf("published keys (%d):\n%s", p.status, p.body)
	}
}

// TestLifecycle: which changes each state allows, through the API.
func TestLifecycle(t *testing.T) {
	h := MustOpenHub(t, t.TempDir(), freeAddr(t))
	seedBuilding(t, h)
	host := client(h, auth.Host)
	res := mustInvite(t, h, inviteReq("", nil, true, time.Hour, guest("Lisa", "Life"), guest("Carla", "Cancel")))
	arriving, cancelled := res.GetVisits()[0].GetId(), res.GetVisits()[1].GetId()
	state := func(id string) visitv1.VisitState { return mustGet(t, h, id).GetState() }

	if _, err := host.ConfirmPickup(ctxT(t), connect.NewRequest(&visitv1.ConfirmPickupRequest{VisitId: arriving})); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("pick-up before check-in: %v", err)
	}
	for range 2 { // the second is a no-op
		if _, err := host.CancelVisit(ctxT(t), connect.NewRequest(&visitv1.CancelVisitRequest{VisitId: cancelled})); err != nil {
			t.Fatal(err)
		}
	}
	if got := state(cancelled); got != visitv1.VisitState_VISIT_STATE_CANCELLED {
		t.Errorf("cancelled visit is %v", got)
	}
	if _, err := host.CheckOut(ctxT(t), connect.NewRequest(&visitv1.CheckOutRequest{VisitId: cancelled})); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("checking out a cancelled visit: %v", err)
	}
	siteCheckIn(t, h, arriving)
	if _, err := host.CancelVisit(ctxT(t), connect.NewRequest(&visitv1.CancelVisitRequest{VisitId: arriving})); connectCode(err) != connect.CodeFailedPrecondition {
		t.Errorf("cancelling a checked-in visit: %v", err)
	}
	for range 2 {
		if _, err := host.ConfirmPickup(ctxT(t), connect.NewRequest(&visitv1.ConfirmPickupRequest{VisitId: arriving})); err != nil {
			t.Fatal(err)
		}
	}
	if got := state(arriving); got != visitv1.VisitState_VISIT_STATE_PICKED_UP {
		t.Errorf("after pick-up: %v", got)
	}
	if _, err := host.GetVisit(ctxT(t), connect.NewRequest(&visitv1.GetVisitRequest{VisitId: "01JN0TAV1S1T00000000000000"})); connectCode(err) != connect.CodeNotFound {
		t.Errorf("an unknown visit: %v", err)
	}
}

// TestNameChangedToAWatchlistedName: a guest who changes their name on the
// pre-check-in page to a name on the watchlist is held for security, and
// the visit does not become pre-registered.
func TestNameChangedToAWatchlistedName(t *testing.T) {
	c := MustStartCatcher(t, "127.0.0.1:0")
	h := MustOpenHub(t, t.TempDir(), c.Addr())
	seedBuilding(t, h)
	sec := client(h, auth.Security)
	if _, err := sec.PutWatchEntry(ctxT(t), connect.NewRequest(&visitv1.PutWatchEntryRequest{Entry: &visitv1.WatchEntry{
		GivenNames: "Mallory", Surname: "Schmidt", Action: visitv1.WatchAction_WATCH_ACTION_HOLD, Reason: "check"}})); err != nil {
		t.Fatal(err)
	}
	v := mustInvite(t, h, inviteReq("", nil, false, time.Hour, guest("Mal", "Smith"))).GetVisits()[0]
	link := checkinLink(t, mailTo(t, c, "mal@example.test"))
	st, _, body := postForm(t, link, map[string]string{"form_token": get(t, link).formToken(t), "given": "Mallory", "family": "Schmidt", "nda": "accept"})
	if st != 409 || !strings.Contains(body, "being reviewed") {
		t.Fatalf("name changed to a held name: %d\n%s", st, body)
	}
	got := mustGet(t, h, v.GetId())
	if !got.GetHeld() || got.GetState() != visitv1.VisitState_VISIT_STATE_INVITED || got.GetGuest().GetFamilyName() != "Smith" {
		t.Errorf("after the change: %v", got)
	}
	if p := get(t, link); !strings.Contains(p.body, "Mal") {
		t.Errorf("page while held: %d\n%s", p.status, p.body)
	}
	rel, err := sec.ReleaseVisit(ctxT(t), connect.NewRequest(&visitv1.ReleaseVisitRequest{VisitId: v.GetId()}))
	if err != nil || rel.Msg.GetVisit().GetHeld() || rel.Msg.GetVisit().GetState() != visitv1.VisitState_VISIT_STATE_INVITED {
		t.Errorf("release: %v %v", rel, err)
	}
}
