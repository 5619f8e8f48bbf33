package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/edge/doors"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/edge/visitdesk"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1/visitv1connect"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/fault"
)

// Secrets and settings of the visitor tests.
const (
	kioskSecret = "e2e-kiosk-secret-0001"
	dispSecret  = "e2e-disp-secret-0001"
	siteAPIKey  = "e2e-api-secret-0123456789"
	// cardFrom and cardTo are the site's visitor card range.
	cardFrom, cardTo = 700000, 700049
)

// visitHub is a hub serving the visitor and cardholder APIs, its mail
// going to a real SMTP server on loopback (cloud/mail's catcher, go-smtp).
type visitHub struct {
	*testHub
	mail   *mail.Catcher
	visits visitv1connect.VisitServiceClient
	// visitorType is the visitor type of the invitations (setUp).
	visitorType string
}

// mustOpenVisitHub starts a hub like MustOpenHub whose outbox sends to an
// SMTP server on loopback, and closes both when the test ends.
func mustOpenVisitHub(t *testing.T, sites ...hub.SyncSite) *visitHub {
	t.Helper()
	c, err := mail.StartCatcher("127.0.0.1:0", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "hub")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(adminKey), Role: auth.Admin}}
	cfg.SyncSites = sites
	cfg.Mail = mail.Config{Addr: c.Addr(), From: "Gatehouse <visits@e2e.gatehouse.test>", TLS: "none"}
	cfg.Visits.RetryMin, cfg.Visits.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	h := hub.New(cfg, testLog(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	url := "http://" + h.Addr()
	opt := connect.WithInterceptors(auth.Bearer(adminKey))
	return &visitHub{
		testHub: &testHub{h: h, url: url,
			people: peoplev1connect.NewPeopleServiceClient(http.DefaultClient, url, opt),
			groups: peoplev1connect.NewGroupServiceClient(http.DefaultClient, url, opt)},
		mail:   c,
		visits: visitv1connect.NewVisitServiceClient(http.DefaultClient, url, opt),
	}
}

// visitSite is a site with a visitor desk: a kiosk and its dispenser on
// the first node's broker, the uplink (and the desk's fetches from the
// hub) through a fault proxy: the site's WAN.
type visitSite struct {
	*testSite
	wan   *fault.Proxy
	kiosk *device.Kiosk
	disp  *device.Dispenser
	api   edgev1connect.SiteServiceClient
}

// mustOpenVisitSite starts an n-node site like MustOpenSite, with a
// visitor desk (card range cardFrom-cardTo, the kiosk paired with the
// dispenser), its WAN to the hub at hubURL through a fault proxy, and
// doorCount doors.
func mustOpenVisitSite(t *testing.T, id access.ID, token, hubURL string, n, doorCount int) *visitSite {
	t.Helper()
	wan, err := fault.Listen("127.0.0.1:0", strings.TrimPrefix(hubURL, "http://"), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Close() })
	kioskID, dispID := newID(t), newID(t)
	dir := t.TempDir()
	s := &testSite{id: id}
	log := testLog(t)
	for i := range n {
		cfg := node.Config{
			NodeID: fmt.Sprintf("%s-n%d", id[len(id)-4:], i+1), SiteID: string(id), SiteName: "Site " + string(id), TimeZone: "UTC",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", MQTTListen: "127.0.0.1:0",
			ClusterToken: "e2e-cluster-secret", APIToken: siteAPIKey,
			Uplink: &node.UplinkConfig{HubURL: "http://" + wan.Addr(), Token: token},
			Visits: &node.VisitsConfig{CardRange: fmt.Sprintf("%d-%d", cardFrom, cardTo), Sweep: "1h",
				Dispensers: map[string]string{string(kioskID): string(dispID)}},
			TuneRaft: func(c *raftnode.Config) {
				c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
			},
			TuneUplink: func(c *uplink.Config) {
				c.MinBackoff, c.MaxBackoff, c.LeaderPoll = 10*time.Millisecond, 200*time.Millisecond, 20*time.Millisecond
			},
			TuneDoors:  func(c *doors.Config) { c.Heartbeat, c.Debounce = heartbeat, 20*time.Millisecond },
			TuneVisits: func(c *visitdesk.Config) { c.DispenserTimeout = 5 * time.Second },
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = s.nodes[0].URL()
		}
		nd := node.New(cfg, log)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("open node %s: %v", cfg.NodeID, err)
		}
		s.nodes = append(s.nodes, nd)
	}
	t.Cleanup(func() {
		for i := len(s.nodes) - 1; i >= 0; i-- {
			_ = s.nodes[i].Close()
		}
	})
	var cmds []*raftv1.Command
	for i := range doorCount {
		door := newID(t)
		s.doors = append(s.doors, door)
		cmds = append(cmds, putDoor(door, id, fmt.Sprintf("door %d", i+1)))
	}
	s.propose(t, cmds...)

	// The kiosk and its dispenser, commissioned with the IDs the desk's
	// config pairs, on the first node's broker.
	vs := &visitSite{testSite: s, wan: wan}
	for _, d := range []struct {
		id     access.ID
		kind   accessv1.DeviceKind
		secret string
	}{{kioskID, accessv1.DeviceKind_DEVICE_KIND_KIOSK, kioskSecret}, {dispID, accessv1.DeviceKind_DEVICE_KIND_DISPENSER, dispSecret}} {
		s.propose(t, putDevice(d.id, id, d.kind, d.secret))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	k, err := device.DialKiosk(ctx, device.KioskConfig{Config: device.Config{Broker: s.nodes[0].MQTTAddr(), Secret: kioskSecret, Log: log,
		Device: mqttproto.Device{Site: string(id), Kind: mqttproto.KindKiosk, ID: string(kioskID)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	dsp, err := device.DialDispenser(ctx, device.DispenserConfig{Config: device.Config{Broker: s.nodes[0].MQTTAddr(), Secret: dispSecret, Log: log,
		Device: mqttproto.Device{Site: string(id), Kind: mqttproto.KindDispenser, ID: string(dispID)}}, Stack: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dsp.Close() })
	vs.kiosk, vs.disp = k, dsp
	vs.api = edgev1connect.NewSiteServiceClient(http.DefaultClient, s.nodes[0].URL(), connect.WithInterceptors(auth.Bearer(siteAPIKey)))
	return vs
}

// waitDesk waits until the kiosk's node holds the hub's token keys, the
// watchlist and the visitor types, and sees the kiosk and the dispenser.
func (s *visitSite) waitDesk(t *testing.T) {
	t.Helper()
	d := s.nodes[0].Desk()
	waitFor(t, "the desk ready", 30*time.Second, func() (bool, string) {
		if err := d.Refresh(context.Background()); err != nil {
			return false, err.Error()
		}
		st := d.Status()
		return st.TokenKeys > 0 && st.Watchlist && st.KiosksOnline == 1 && st.DispensersOnline == 1, fmt.Sprintf("%+v", st)
	})
}

// synced waits until the site's uplink is connected and the hub has
// acknowledged everything the site made, in every lane.
func (s *visitSite) synced(t *testing.T, what string) {
	t.Helper()
	waitFor(t, what, 30*time.Second, func() (bool, string) {
		for _, nd := range s.nodes {
			u := nd.Uplink()
			if u == nil {
				continue
			}
			st := u.Status()
			if !st.Active {
				continue
			}
			var lag uint64
			for _, l := range st.Lag {
				lag += l
			}
			return st.Connected && !st.LastSync.IsZero() && lag == 0, fmt.Sprintf("%+v", st)
		}
		return false, "no node runs the uplink"
	})
}

// ask makes a kiosk request and returns the site's answer.
func (s *visitSite) ask(t *testing.T, req func(ctx context.Context) (string, error)) device.KioskRequest {
	t.Helper()
	ctx := context.Background()
	rid, err := req(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.kiosk.Answer(ctx, rid, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// expect fails the test unless the kiosk shows ok and code, with a message.
func expect(t *testing.T, what string, r device.KioskRequest, ok bool, code string) {
	t.Helper()
	if r.Answer.OK != ok || r.Answer.Code != code {
		t.Fatalf("%s: kiosk shows ok=%t %s %q, want ok=%t %s", what, r.Answer.OK, r.Answer.Code, r.Answer.Message, ok, code)
	}
	if r.Answer.Message == "" {
		t.Errorf("%s: kiosk answer %s without a message", what, code)
	}
}

// passport returns the MRZ of a passport of the given names, valid for
// years.
func passport(t *testing.T, given, surname string) []string {
	t.Helper()
	m, err := device.Document{GivenNames: given, Surname: surname, Number: "C01X00T47", Birth: time.Date(1984, 3, 9, 0, 0, 0, 0, time.UTC),
		Expiry: time.Now().AddDate(4, 0, 0)}.MRZ()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkIn runs a whole kiosk check-in (QR, passport, check-in) and returns
// the visit and the card the dispenser handed out.
func (s *visitSite) checkIn(t *testing.T, token, given, surname string) (access.ID, access.CardNumber) {
	t.Helper()
	r := s.ask(t, func(ctx context.Context) (string, error) { return s.kiosk.ScanQR(ctx, token) })
	expect(t, "QR scanned", r, true, visitdesk.CodeInvitationValid)
	v := r.Answer.Visit
	expect(t, "passport scanned", s.ask(t, func(ctx context.Context) (string, error) {
		return s.kiosk.ScanDocument(ctx, passport(t, given, surname), v)
	}), true, visitdesk.CodeDocumentOK)
	before := len(s.disp.Status().Dispensed)
	r = s.ask(t, func(ctx context.Context) (string, error) { return s.kiosk.CheckIn(ctx, v) })
	expect(t, "check-in", r, true, visitdesk.CodeCheckedIn)
	if r.Dispenser != s.disp.Device().ID {
		t.Errorf("kiosk told dispenser %q, want %q", r.Dispenser, s.disp.Device().ID)
	}
	st := s.disp.Status()
	if len(st.Dispensed) != before+1 {
		t.Fatalf("dispenser handed out %d cards at check-in, want 1", len(st.Dispensed)-before)
	}
	card := st.Dispensed[len(st.Dispensed)-1]
	if card < cardFrom || card > cardTo {
		t.Fatalf("card %s outside the site's visitor range", card)
	}
	if bound := s.cardsOf(v); !slices.Equal(bound, []access.CardNumber{card}) {
		t.Fatalf("cards bound to the visit %v, want the dispensed %s", bound, card)
	}
	return v, card
}

// cardsOf returns the cards bound to visit v at the kiosk's node.
func (s *visitSite) cardsOf(v access.ID) []access.CardNumber {
	var out []access.CardNumber
	s.nodes[0].Machine().View(func(st *access.State) {
		for c := range st.Cards() {
			if c.VisitID == v {
				out = append(out, c.Number)
			}
		}
	})
	return out
}

// visitAtSite returns visit v as the kiosk's node has it.
func (s *visitSite) visitAtSite(v access.ID) access.Visit {
	var out access.Visit
	s.nodes[0].Machine().View(func(st *access.State) { out, _ = st.Visit(v) })
	return out
}

// invitation invites one guest per name ("Given Family" with an email) at
// the site through the hub's API, and returns the visits.
func (h *visitHub) invite(t *testing.T, site access.ID, host, profile string, escort bool, guests ...*visitv1.Guest) []*visitv1.Visit {
	t.Helper()
	now := time.Now()
	res, err := h.visits.Invite(context.Background(), connect.NewRequest(&visitv1.InviteRequest{
		SiteId: string(site), HostId: host, VisitorTypeId: h.visitorType, FromMs: now.UnixMilli(), UntilMs: now.Add(3 * time.Hour).UnixMilli(),
		ProfileIds: []string{profile}, Escort: escort, Guests: guests, IdempotencyKey: "e2e-" + string(newID(t)),
	}))
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	if len(res.Msg.GetVisits()) != len(guests) {
		t.Fatalf("invite made %d visits for %d guests", len(res.Msg.GetVisits()), len(guests))
	}
	return res.Msg.GetVisits()
}

// qrToken waits for the invitation email to addr at the SMTP server,
// decodes the QR code of its PNG and returns the token it carries.
func (h *visitHub) qrToken(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := h.mail.Wait(ctx, func(m mail.Caught) bool { return slices.Contains(m.To, addr) && len(m.Parts) > 0 })
	if err != nil {
		t.Fatalf("the invitation email to %s: %v", addr, err)
	}
	qr, ok := m.Part(mail.QRContentID)
	if !ok || qr.ContentType != "image/png" {
		t.Fatalf("the invitation to %s has no QR image among %d parts", addr, len(m.Parts))
	}
	img, err := png.Decode(bytes.NewReader(qr.Data))
	if err != nil {
		t.Fatal(err)
	}
	tok := decodeQR(t, img)
	if !strings.HasPrefix(tok, "GH1.") || !strings.Contains(m.Text, tok) {
		t.Fatalf("QR code carries %q, not the token of the email's text", tok)
	}
	return tok
}

// arrivals returns the arrival emails caught for host address addr.
func (h *visitHub) arrivals(addr string) []mail.Caught {
	var out []mail.Caught
	for _, m := range h.mail.Messages() {
		if slices.Contains(m.To, addr) && strings.Contains(m.Subject, "has arrived") {
			out = append(out, m)
		}
	}
	return out
}

// hubVisit returns visit id as the hub's API shows it.
func (h *visitHub) hubVisit(t *testing.T, id string) *visitv1.Visit {
	t.Helper()
	res, err := h.visits.GetVisit(context.Background(), connect.NewRequest(&visitv1.GetVisitRequest{VisitId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetVisit()
}

// waitHubState waits until the hub shows visit id in state want.
func (h *visitHub) waitHubState(t *testing.T, what, id string, want visitv1.VisitState) {
	t.Helper()
	waitFor(t, what, 30*time.Second, func() (bool, string) {
		v := h.hubVisit(t, id)
		return v.GetState() == want, v.GetState().String()
	})
}

// onSite returns the IDs of the visits the hub lists on site at site.
func (h *visitHub) onSite(t *testing.T, site access.ID) []string {
	t.Helper()
	res, err := h.visits.ListVisits(context.Background(), connect.NewRequest(&visitv1.ListVisitsRequest{SiteId: string(site), OnSite: true}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range res.Msg.GetVisits() {
		ids = append(ids, v.GetId())
	}
	return ids
}

// accessLogs returns the access decisions at door the hub holds.
func (h *visitHub) accessLogs(t *testing.T, site, door access.ID) []*peoplev1.AccessLog {
	t.Helper()
	res, err := h.people.ListAccessLogs(context.Background(), connect.NewRequest(&peoplev1.ListAccessLogsRequest{SiteId: string(site), DoorId: string(door), PageSize: 500}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetLogs()
}

// setUp makes, through the hub's API, a host with an email, a profile of
// the site's first door and a visitor type allowing it (used by invite
// from then on), and waits until
// the site has them.
func (h *visitHub) setUp(t *testing.T, s *visitSite, hostEmail string) (host, profile string) {
	t.Helper()
	profile = h.group(t, s.id, "Meeting rooms", s.doors[0])
	vt, err := h.visits.PutVisitorType(context.Background(), connect.NewRequest(&visitv1.PutVisitorTypeRequest{
		VisitorType: &visitv1.VisitorType{Name: "Guest", AllowedProfileIds: []string{profile}}}))
	if err != nil {
		t.Fatal(err)
	}
	h.visitorType = vt.Msg.GetVisitorType().GetId()
	host = h.create(t, &peoplev1.CreatePersonRequest{FirstName: "Maria", LastName: "Lopez", Email: hostEmail, Kind: accessUser, Active: true})
	// The host reaches the site with their first visit there: the hub
	// sends a site only the people that concern it.
	waitFor(t, "the profile at the site", 30*time.Second, func() (bool, string) {
		var ok bool
		s.nodes[0].Machine().View(func(st *access.State) {
			_, ok = st.Group(access.ID(profile))
		})
		return ok, "not yet"
	})
	return host, profile
}

// kinds is shorthand for the protobuf enums used here.
var (
	hubCheckedIn  = visitv1.VisitState_VISIT_STATE_CHECKED_IN
	hubPickedUp   = visitv1.VisitState_VISIT_STATE_PICKED_UP
	hubCheckedOut = visitv1.VisitState_VISIT_STATE_CHECKED_OUT
	hubInvited    = visitv1.VisitState_VISIT_STATE_INVITED
)

// pickupAPI confirms the pick-up of visit v through the site's API.
func (s *visitSite) pickupAPI(t *testing.T, v access.ID) {
	t.Helper()
	if _, err := s.api.ConfirmPickup(context.Background(), connect.NewRequest(&edgev1.ConfirmPickupRequest{VisitId: string(v)})); err != nil {
		t.Fatalf("pick-up at the site: %v", err)
	}
}

// putDoor is the Raft command putting door id of site.
func putDoor(id, site access.ID, name string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: string(id), SiteId: string(site), Name: name}}}
}

// putDevice is the Raft command commissioning device id of kind at site.
func putDevice(id, site access.ID, kind accessv1.DeviceKind, secret string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(id), SiteId: string(site), Kind: kind,
		Name: "device " + string(id[len(id)-4:]), SecretHash: access.HashSecret([]byte(secret))}}}
}

// decodeQR decodes the QR code of img with gozxing. gozxing's detector
// misses a few percent of the codes the hub renders (go-qrcode, 256 px)
// upright but finds them turned by a quarter (tried on 500 random tokens:
// every one decodes in one of the four), so like a scanner held at another
// angle it tries the four orientations.
func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	var errs []error
	for range 4 {
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
		if err == nil {
			return res.GetText()
		}
		errs = append(errs, err)
		img = rotate(img)
	}
	t.Fatalf("decode the QR code in any orientation: %v", errs)
	return ""
}

// rotate returns img turned by a quarter, clockwise.
func rotate(img image.Image) image.Image {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(b.Dy()-1-y, x, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}
