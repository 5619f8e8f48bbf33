package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/visitdesk"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/sim/device"
)

func init() {
	Default.Register(Bench{
		Name: "checkin",
		Help: "kiosk QR scan -> ID document -> check-in -> card encoded and dispensed, over MQTT at a 3-node site, against a Raft write",
		Run:  runCheckin,
	})
}

// checkinParams sizes the check-in benchmark.
type checkinParams struct {
	visits int // guests checked in, one after the other
	writes int // Raft writes for the floor
}

var (
	checkinFull  = checkinParams{visits: 200, writes: 500}
	checkinQuick = checkinParams{visits: 40, writes: 100}
	// checkinTest, when set, replaces checkinQuick (tests).
	checkinTest *checkinParams
)

// checkinCardBase is the first number of the bench site's visitor range.
const checkinCardBase = 5_000_000

// runCheckin measures a guest's check-in at a kiosk, end to end: the
// simulated kiosk publishes qr_scanned and waits for the site's answer,
// then id_scanned (a passport's MRZ) and check_in; the site verifies the
// token offline, parses and checks the document, has the simulated
// dispenser encode a card from its range, commits the check-in through
// Raft and has the card dispensed. One latency is the time from the QR
// scan's publish to the check-in's show_result. Guests check in one after
// the other (a kiosk serves one guest at a time).
//
// The floor is the p50 of a single Raft write that takes no access away
// (a PutVisitorType proposed at the leader and applied there, like the
// check-in's CheckInVisit), measured in the same run on the same site,
// alternating with the check-ins: a check-in costs one such write plus
// three kiosk round trips and two dispenser round trips over MQTT.
//
// The desk runs on the leader, whose embedded broker the kiosk and the
// dispenser connect to; it is wired as the node wires it (edge/visitdesk
// over the node's gateway), with the hub's token keys served by an
// in-process HTTP server.
func runCheckin(ctx context.Context, opt Options, emit func(Result)) error {
	p := checkinFull
	if opt.Quick {
		p = checkinQuick
		if checkinTest != nil {
			p = *checkinTest
		}
	}
	dir := opt.Dir
	site, err := startSite(ctx, filepath.Join(dir, "checkin-site"), 3, opt.Log, false)
	if err != nil {
		return err
	}
	defer site.close()
	li, err := site.leader(ctx)
	if err != nil {
		return err
	}
	nd := site.nodes[li]

	// The hub's public token keys.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := access.NewTokenSigner(priv, rand.Reader)
	if err != nil {
		return err
	}
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/visits/token-keys":
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{"key_id": access.KeyIDOf(pub).String(),
				"public_key": hex.EncodeToString(pub), "created": time.Now().UTC().Format(time.RFC3339), "current": true}}})
		case "/visits/site-watchlist":
			_ = json.NewEncoder(w).Encode(map[string]any{"site": site.siteID, "version": 1, "entries": []any{}})
		case "/visits/site-visitor-types":
			_ = json.NewEncoder(w).Encode(map[string]any{"site": site.siteID, "version": 1, "visitor_types": []any{}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer hub.Close()

	desk, err := visitdesk.New(visitdesk.Config{SiteID: access.ID(site.siteID), NodeID: "bench", Dir: filepath.Join(dir, "checkin-desk"),
		HubURL: hub.URL, CardFrom: checkinCardBase, CardTo: checkinCardBase + access.CardNumber(p.visits) + 99},
		benchDeskSite{nd}, site.log)
	if err != nil {
		return err
	}
	desk.Open()
	defer desk.Close()
	if err := nd.Gateway().HookVisitorDevices(desk); err != nil {
		return err
	}

	// The site: devices, a host, a profile, the guests' visits.
	gen := access.NewIDGen(rand.Reader)
	newID := func() string { v, _ := gen.New(time.Now()); return string(v) }
	kioskID, dispID, host, profile := newID(), newID(), newID(), newID()
	cmds := []*raftv1.Command{
		{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: host, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Host, Helen", Active: true}}},
		{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: profile, SiteId: site.siteID, Name: "visitors", Kind: accessv1.GroupKind_GROUP_KIND_VISITOR_PROFILE}}},
		{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: kioskID, SiteId: site.siteID, Kind: accessv1.DeviceKind_DEVICE_KIND_KIOSK, Name: "kiosk", SecretHash: access.HashSecret([]byte("bench-kiosk-secret"))}}},
		{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: dispID, SiteId: site.siteID, Kind: accessv1.DeviceKind_DEVICE_KIND_DISPENSER, Name: "dispenser", SecretHash: access.HashSecret([]byte("bench-disp-secret"))}}},
	}
	now := time.Now()
	type guest struct {
		visit access.ID
		token string
	}
	guests := make([]guest, p.visits)
	for i := range guests {
		v, g := newID(), newID()
		cmds = append(cmds,
			&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: g, Kind: accessv1.PersonKind_PERSON_KIND_VISITOR, Name: "Visitor, Vera", Active: true}}},
			&raftv1.Command{Op: &raftv1.Command_PutVisit{PutVisit: &accessv1.Visit{Id: v, SiteId: site.siteID, HostId: host, VisitorId: g,
				FromMs: now.Add(-time.Hour).UnixMilli(), UntilMs: now.Add(8 * time.Hour).UnixMilli(), State: accessv1.VisitState_VISIT_STATE_INVITED}}},
			&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: newID(), HolderId: v, GroupId: profile}}})
		tok, err := signer.Sign(access.TokenClaims{Visit: access.ID(v), Site: access.ID(site.siteID), Guest: access.ID(g),
			NotBefore: now.Add(-time.Hour), Expires: now.Add(8 * time.Hour)})
		if err != nil {
			return err
		}
		guests[i] = guest{visit: access.ID(v), token: tok}
	}
	for len(cmds) > 0 {
		n := min(len(cmds), 900)
		res, err := nd.Propose(ctx, cmds[:n]...)
		if err != nil {
			return fmt.Errorf("checkin: load: %w", err)
		}
		if err := nd.Raft().WaitApplied(ctx, res[len(res)-1].GetIndex()); err != nil {
			return err
		}
		cmds = cmds[n:]
	}

	kiosk, err := device.DialKiosk(ctx, device.KioskConfig{Config: device.Config{Broker: nd.MQTTAddr(), Secret: "bench-kiosk-secret",
		Device: mqttproto.Device{Site: site.siteID, Kind: mqttproto.KindKiosk, ID: kioskID}}})
	if err != nil {
		return err
	}
	defer kiosk.Close()
	disp, err := device.DialDispenser(ctx, device.DispenserConfig{Config: device.Config{Broker: nd.MQTTAddr(), Secret: "bench-disp-secret",
		Device: mqttproto.Device{Site: site.siteID, Kind: mqttproto.KindDispenser, ID: dispID}}, Stack: p.visits + 10, CaptureCapacity: p.visits + 10})
	if err != nil {
		return err
	}
	defer disp.Close()
	if err := waitUntil(ctx, 30*time.Second, "desk ready", func() bool {
		st := desk.Status()
		return st.TokenKeys == 1 && st.DispensersOnline == 1 && st.KiosksOnline == 1
	}); err != nil {
		return err
	}

	mrz, err := device.Document{GivenNames: "VERA", Surname: "VISITOR", Number: "X1234567", Expiry: now.AddDate(5, 0, 0)}.MRZ()
	if err != nil {
		return err
	}
	// write is the floor's unit: one Raft write that, like CheckInVisit,
	// takes no access away (no fencing), proposed at the leader and
	// applied there.
	vtype := newID()
	var writes []time.Duration
	write := func(i int) error {
		start := time.Now()
		res, err := nd.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutVisitorType{PutVisitorType: &accessv1.VisitorType{
			Id: vtype, Name: fmt.Sprintf("Bench %d", i)}}})
		if err == nil {
			err = nd.Raft().WaitApplied(ctx, res[0].GetIndex())
		}
		if err != nil {
			return fmt.Errorf("checkin: floor write: %w", err)
		}
		writes = append(writes, time.Since(start))
		return nil
	}
	var lat []time.Duration
	refused := 0
	ask := func(req func(context.Context) (string, error)) (device.KioskRequest, error) {
		id, err := req(ctx)
		if err != nil {
			return device.KioskRequest{}, err
		}
		return kiosk.Answer(ctx, id, 30*time.Second)
	}
	checkIn := func(g guest) error {
		start := time.Now()
		r, err := ask(func(ctx context.Context) (string, error) { return kiosk.ScanQR(ctx, g.token) })
		if err == nil && r.Answer.OK {
			r, err = ask(func(ctx context.Context) (string, error) { return kiosk.ScanDocument(ctx, mrz, g.visit) })
		}
		if err == nil && r.Answer.OK {
			r, err = ask(func(ctx context.Context) (string, error) { return kiosk.CheckIn(ctx, g.visit) })
		}
		if err != nil {
			return fmt.Errorf("checkin: %w", err)
		}
		if !r.Answer.OK {
			refused++
			opt.Log.Warn("check-in refused", "code", r.Answer.Code, "message", r.Answer.Message)
			return nil
		}
		lat = append(lat, time.Since(start))
		return nil
	}
	// Floor writes and check-ins alternate, so both see the same machine.
	for i := 0; i < max(p.writes, p.visits); i++ {
		if i < p.writes {
			if err := write(i); err != nil {
				return err
			}
		}
		if i < p.visits {
			if err := checkIn(guests[i]); err != nil {
				return err
			}
		}
	}
	floor := Micros(Percentile(writes, 0.50))
	emit(NewResult("checkin", "raft_write_p50_us", floor, "us", floor))
	emit(NewResult("checkin", "raft_write_p99_us", Micros(Percentile(writes, 0.99)), "us", floor))
	emit(NewResult("checkin", "qr_to_card_p50_us", Micros(Percentile(lat, 0.50)), "us", floor))
	emit(NewResult("checkin", "qr_to_card_p99_us", Micros(Percentile(lat, 0.99)), "us", floor))
	emit(NewResult("checkin", "refused", float64(refused), "count", 0))
	return nil
}

// benchDeskSite is a node as its visitor desk sees it (as edge/node wires
// it).
type benchDeskSite struct{ n *node.Node }

func (s benchDeskSite) View(fn func(st *access.State)) { s.n.Machine().View(fn) }

func (s benchDeskSite) Propose(ctx context.Context, cmd *raftv1.Command) (*edgev1.CommandResult, error) {
	res, err := s.n.ProposeResults(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return res[0], s.n.Raft().WaitApplied(ctx, res[0].GetIndex())
}

func (s benchDeskSite) Publish(ctx context.Context, d mqttproto.Device, payload []byte) error {
	return s.n.Gateway().PublishCmd(ctx, d, payload)
}
