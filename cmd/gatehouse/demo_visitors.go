package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1/visitv1connect"
	"github.com/gatehouse/gatehouse/sim/device"
)

// The demo's fixed visitor IDs (the host is made at the hub, which picks
// its ID).
const (
	// demoProfileID is the visitor profile "Visitors": the lobby doors and
	// floor 1.
	demoProfileID = "01JDEMGR0VP000000000000000"
	// demoTypeID is the visitor type "Guest", which allows the profile.
	demoTypeID = "01JDEMTYPE0000000000000000"
	// demoKioskID and demoDispenserID are the lobby kiosk and the card
	// dispenser paired with it in the site's visits config.
	demoKioskID     = "01JDEMK10SK000000000000000"
	demoDispenserID = "01JDEMD1SPE000000000000000"
	// demoCardRange is the site's visitor card range.
	demoCardRange = "900000-900999"
	// demoMaxForm bounds the body of a request to the demo's endpoints.
	demoMaxForm = 64 << 10
)

// demoProfileDoors are the doors (by name in demo.scn) of the visitor
// profile.
var demoProfileDoors = []string{"lobby-in", "lobby-out", "floor-1"}

// demoVisitsConfig is the demo site's visitor desk: the card range and the
// lobby kiosk paired with the lobby dispenser.
func demoVisitsConfig() *node.VisitsConfig {
	return &node.VisitsConfig{CardRange: demoCardRange, Dispensers: map[string]string{demoKioskID: demoDispenserID}, Refresh: "1m"}
}

// demoVisitors is the demo's visitor desk hardware: the simulated lobby
// kiosk and dispenser, and simulated readers at the doors for the taps a
// user asks for. Its HTTP handler drives them (POST /demo/kiosk/checkin,
// /demo/kiosk/checkout, /demo/tap). It is safe for concurrent use; the
// kiosk serves one request at a time.
type demoVisitors struct {
	log *slog.Logger

	mu      sync.Mutex // serialises the kiosk's conversations and guards the fields below
	ready   bool
	node    *node.Node // the node the devices connect to
	kiosk   *device.Kiosk
	disp    *device.Dispenser
	readers map[access.ID]*device.Reader
	// hostID is the host of the demo's invitations, made at the hub with
	// an email address (the arrival email goes to the demo's catcher).
	hostID string
}

// demoDeviceSecret is the secret of the demo's own simulated devices.
const demoDeviceSecret = "demo-visitor-device-secret"

// setUp waits until the simulated building is on the site, then puts the
// visitor profile and the kiosk and dispenser through Raft, connects the
// devices, gives the hub the visitor type and the host (people other
// than visitors are the hub's: the hub refuses them from a site) and has
// every node's desk fetch the hub's keys.
func (d *demoVisitors) setUp(ctx context.Context, nodes []*node.Node, hubURL, hubKey string) error {
	n := nodes[0]
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var doorIDs, seen []string
	for {
		doorIDs, seen = doorIDs[:0], seen[:0]
		n.Machine().View(func(st *access.State) {
			for dr := range st.Doors() {
				seen = append(seen, dr.Name)
				if slices.Contains(demoProfileDoors, scenarioName(dr.Name)) {
					doorIDs = append(doorIDs, string(dr.ID))
				}
			}
		})
		if len(doorIDs) == len(demoProfileDoors) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: the building's doors %v did not reach the site (it has %q): %w", demoProfileDoors, seen, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	slices.Sort(doorIDs)
	dev := func(id string, kind accessv1.DeviceKind, name string) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: id, SiteId: demoSiteID, Kind: kind, Name: name,
			SecretHash: access.HashSecret([]byte(demoDeviceSecret))}}}
	}
	if _, err := n.Propose(ctx,
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: demoProfileID, SiteId: demoSiteID, Name: "Visitors",
			DoorIds: doorIDs, Kind: accessv1.GroupKind_GROUP_KIND_VISITOR_PROFILE}}},
		dev(demoKioskID, accessv1.DeviceKind_DEVICE_KIND_KIOSK, "lobby kiosk"),
		dev(demoDispenserID, accessv1.DeviceKind_DEVICE_KIND_DISPENSER, "lobby dispenser"),
	); err != nil {
		return fmt.Errorf("demo: visitor setup at the site: %w", err)
	}
	conf := func(kind mqttproto.Kind, id string) device.Config {
		return device.Config{Broker: n.MQTTAddr(), Secret: demoDeviceSecret, Log: d.log,
			Device: mqttproto.Device{Site: demoSiteID, Kind: kind, ID: id}}
	}
	k, err := device.DialKiosk(ctx, device.KioskConfig{Config: conf(mqttproto.KindKiosk, demoKioskID)})
	if err != nil {
		return fmt.Errorf("demo: the lobby kiosk: %w", err)
	}
	disp, err := device.DialDispenser(ctx, device.DispenserConfig{Config: conf(mqttproto.KindDispenser, demoDispenserID), Stack: 200})
	if err != nil {
		_ = k.Close()
		return fmt.Errorf("demo: the lobby dispenser: %w", err)
	}
	vc := visitv1connect.NewVisitServiceClient(http.DefaultClient, strings.TrimSuffix(hubURL, "/"), connect.WithInterceptors(auth.Bearer(hubKey)))
	if _, err := vc.PutVisitorType(ctx, connect.NewRequest(&visitv1.PutVisitorTypeRequest{VisitorType: &visitv1.VisitorType{
		Id: demoTypeID, Name: "Guest", AllowedProfileIds: []string{demoProfileID}}})); err != nil {
		_, _ = k.Close(), disp.Close()
		return fmt.Errorf("demo: the visitor type at the hub: %w", err)
	}
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, strings.TrimSuffix(hubURL, "/"), connect.WithInterceptors(auth.Bearer(hubKey)))
	host, err := pc.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{IdempotencyKey: "demo-host", FirstName: "Hannah", LastName: "Host",
		Email: "host@demo.gatehouse.test", Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER, Active: true}))
	if err != nil {
		_, _ = k.Close(), disp.Close()
		return fmt.Errorf("demo: the host at the hub: %w", err)
	}
	// The desks fetched the hub's keys at start, before the hub served:
	// fetch them now rather than at the next refresh.
	for _, nd := range nodes {
		if err := nd.Desk().Refresh(ctx); err != nil {
			d.log.Warn("demo: visitor desk refresh", "node", nd.Raft().Status().NodeID, "err", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.node, d.kiosk, d.disp, d.readers, d.ready = n, k, disp, map[access.ID]*device.Reader{}, true
	d.hostID = host.Msg.GetPerson().GetId()
	return nil
}

// Close disconnects the demo's devices.
func (d *demoVisitors) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.kiosk != nil {
		errs = append(errs, d.kiosk.Close(), d.disp.Close())
	}
	for _, r := range d.readers {
		errs = append(errs, r.Close())
	}
	d.kiosk, d.disp, d.readers, d.ready = nil, nil, nil, false
	return errors.Join(errs...)
}

// Handler serves the demo's endpoints; every answer is plain text.
func (d *demoVisitors) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /demo/kiosk/checkin", d.serve(d.checkIn))
	mux.HandleFunc("POST /demo/kiosk/checkout", d.serve(d.checkOut))
	mux.HandleFunc("POST /demo/tap", d.serve(d.tap))
	return mux
}

// demoError is an answer with an HTTP status.
type demoError struct {
	status int
	msg    string
}

func (e *demoError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &demoError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// serve wraps fn: a bounded form, the devices ready, one conversation at a
// time, the answer or the error as text.
func (d *demoVisitors) serve(fn func(ctx context.Context, r *http.Request, out *strings.Builder) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, demoMaxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "malformed or too large form: "+err.Error(), http.StatusBadRequest)
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if !d.ready {
			http.Error(w, "the demo's kiosk is not ready yet; try again in a few seconds", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		var out strings.Builder
		err := fn(ctx, r, &out)
		status := http.StatusOK
		if err != nil {
			var de *demoError
			if errors.As(err, &de) {
				status = de.status
			} else {
				status = http.StatusBadGateway
			}
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(out.String()))
	}
}

// ask makes one kiosk request, writes the site's answer to out and
// returns it.
func (d *demoVisitors) ask(ctx context.Context, out *strings.Builder, what string, req func(ctx context.Context) (string, error)) (device.KioskRequest, error) {
	rid, err := req(ctx)
	if err != nil {
		return device.KioskRequest{}, fmt.Errorf("kiosk %s: %w", what, err)
	}
	r, err := d.kiosk.Answer(ctx, rid, 20*time.Second)
	if err != nil {
		return r, fmt.Errorf("kiosk %s: no answer from the site: %w", what, err)
	}
	fmt.Fprintf(out, "%-16s %s: %s\n", what, r.Answer.Code, r.Answer.Message)
	if !r.Answer.OK {
		return r, &demoError{http.StatusUnprocessableEntity, "the kiosk refused: " + r.Answer.Code}
	}
	return r, nil
}

// checkIn scans the token's QR code at the kiosk, then a passport made for
// the guest's name (or mrz_name, "Family, Given"), then checks in.
func (d *demoVisitors) checkIn(ctx context.Context, r *http.Request, out *strings.Builder) error {
	token := strings.TrimSpace(r.Form.Get("token"))
	if token == "" {
		return badRequest("token is required: the GH1.… token under the QR code of the invitation email")
	}
	ans, err := d.ask(ctx, out, "QR scanned", func(ctx context.Context) (string, error) { return d.kiosk.ScanQR(ctx, token) })
	if err != nil {
		return err
	}
	visit := ans.Answer.Visit
	name := strings.TrimSpace(r.Form.Get("mrz_name"))
	if name == "" {
		d.node.Machine().View(func(st *access.State) {
			if v, ok := st.Visit(visit); ok {
				if p, ok := st.Person(v.VisitorID); ok {
					name = p.Name
				}
			}
		})
	}
	given, family := access.SplitVisitorName(name)
	mrz, err := device.Document{GivenNames: given, Surname: family, Number: "D3M0P4SS1", Birth: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC),
		Expiry: time.Now().AddDate(5, 0, 0)}.MRZ()
	if err != nil {
		return badRequest("a passport for %q: %v", name, err)
	}
	fmt.Fprintf(out, "%-16s %s\n", "passport", strings.Join(mrz, " / "))
	if _, err := d.ask(ctx, out, "passport scanned", func(ctx context.Context) (string, error) { return d.kiosk.ScanDocument(ctx, mrz, visit) }); err != nil {
		return err
	}
	before := len(d.disp.Status().Dispensed)
	if _, err := d.ask(ctx, out, "check-in", func(ctx context.Context) (string, error) { return d.kiosk.CheckIn(ctx, visit) }); err != nil {
		return err
	}
	fmt.Fprintf(out, "visit            %s\n", visit)
	if st := d.disp.Status(); len(st.Dispensed) > before {
		fmt.Fprintf(out, "card             %d (encoded and dispensed by the lobby dispenser)\n", st.Dispensed[len(st.Dispensed)-1])
	}
	return nil
}

// checkOut checks a visit (visit=ID) or the visit of a card (card=N) out
// at the kiosk.
func (d *demoVisitors) checkOut(ctx context.Context, r *http.Request, out *strings.Builder) error {
	var visit access.ID
	var card access.CardNumber
	if v := strings.TrimSpace(r.Form.Get("visit")); v != "" {
		id, err := access.ParseID(v)
		if err != nil {
			return badRequest("visit %q: %v", v, err)
		}
		visit = id
	}
	if c := strings.TrimSpace(r.Form.Get("card")); c != "" {
		n, err := strconv.ParseUint(c, 10, 64)
		if err != nil || n == 0 {
			return badRequest("card %q: want a card number", c)
		}
		card = access.CardNumber(n)
	}
	if visit == "" && card == 0 {
		return badRequest("visit=ID or card=N is required")
	}
	_, err := d.ask(ctx, out, "checkout", func(ctx context.Context) (string, error) { return d.kiosk.CheckOut(ctx, visit, card) })
	return err
}

// tap presents card=N at a simulated reader at door=NAME (a door of
// demo.scn) over MQTT and writes the site's decision.
func (d *demoVisitors) tap(ctx context.Context, r *http.Request, out *strings.Builder) error {
	name := strings.TrimSpace(r.Form.Get("door"))
	c := strings.TrimSpace(r.Form.Get("card"))
	n, err := strconv.ParseUint(c, 10, 64)
	if name == "" || err != nil || n == 0 {
		return badRequest("door=NAME and card=N are required (doors: lobby-in, lobby-out, floor-1, floor-2, server-room)")
	}
	var door access.ID
	d.node.Machine().View(func(st *access.State) {
		for dr := range st.Doors() {
			if scenarioName(dr.Name) == name {
				door = dr.ID
			}
		}
	})
	if door == "" {
		return &demoError{http.StatusNotFound, fmt.Sprintf("no door %q (doors: lobby-in, lobby-out, floor-1, floor-2, server-room)", name)}
	}
	rd, ok := d.readers[door]
	if !ok {
		id := "01JDEMRDR" + strings.TrimPrefix(string(door), string(door[:9]))
		if _, err := d.node.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: id, SiteId: demoSiteID,
			Kind: accessv1.DeviceKind_DEVICE_KIND_READER, Name: "demo reader at " + name, DoorId: string(door),
			SecretHash: access.HashSecret([]byte(demoDeviceSecret))}}}); err != nil {
			return fmt.Errorf("commission a reader at %s: %w", name, err)
		}
		rd, err = device.DialReader(ctx, device.ReaderConfig{Door: door, Config: device.Config{Broker: d.node.MQTTAddr(), Secret: demoDeviceSecret,
			Log: d.log, Device: mqttproto.Device{Site: demoSiteID, Kind: mqttproto.KindReader, ID: id}}})
		if err != nil {
			return fmt.Errorf("a reader at %s: %w", name, err)
		}
		d.readers[door] = rd
	}
	res, err := rd.Tap(ctx, access.CardNumber(n), 10*time.Second)
	if err != nil {
		return fmt.Errorf("tap at %s: %w", name, err)
	}
	verdict := "denied"
	if res.Decision.Grant {
		verdict = "granted"
	}
	fmt.Fprintf(out, "%s at %s: %s (%s)\n", c, name, verdict, res.Decision.Reason)
	return nil
}

// scenarioName is the name a door has in demo.scn: the simulator names
// the doors it sets up "NAME (sim FILE)".
func scenarioName(name string) string {
	n, _, _ := strings.Cut(name, " (sim ")
	return n
}
