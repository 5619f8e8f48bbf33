package runner

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/fault"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// readerSpec is a reader or door controller to commission and connect.
type readerSpec struct {
	name       string
	door       string // the door's scenario name
	broker     int    // 1-based broker to pin it to, 0 for round-robin
	controller bool   // a door controller, not a reader
	proxy      bool   // connect through a fault proxy (to be cut)
	// kind, when set, makes this a kiosk or a dispenser (with stack
	// cards, 0 for the default) rather than a reader or controller.
	kind  mqttproto.Kind
	stack int
}

// commissioned is a reader or door controller made at the site.
type commissioned struct {
	readerSpec
	id     string
	doorID string
	secret string
	addr   string // broker address
	reader *device.Reader
	// proxy, when set, is what the device dials instead of addr.
	proxy *fault.Proxy
	// ctl, for a door controller, is the controller now (a restart makes
	// a new one on the same dir).
	ctl *device.Controller
	dir string
	// past are the events of the controller's earlier runs (before a
	// restart step) in this scenario run.
	past []mqttproto.DoorEvent
	// kiosk and disp are a kiosk's and a dispenser's device.
	kiosk *device.Kiosk
	disp  *device.Dispenser
}

// deployment is a scenario applied to a site: the IDs made for its names,
// the records written, the readers connected. It is used by one goroutine
// (the run), except that readers tap concurrently in load mode.
type deployment struct {
	r    *Runner
	scn  *scenario.Scenario
	site siteInfo
	// base is the time relative instants of the scenario were resolved
	// against.
	base time.Time

	zones, doors, schedules, groups, tenants map[string]string // name -> ID
	people                                   map[string]*accessv1.Person
	cards                                    map[access.CardNumber]*accessv1.Card
	grants                                   map[[2]string]string // (person, group) -> live grant ID
	readers                                  []*commissioned
	byName                                   map[string]*commissioned
	// controllers and ctls are the door controllers, by scenario name.
	controllers []*commissioned
	ctls        map[string]*commissioned
	// kiosks and dispensers, with the same by scenario name.
	kiosks, dispensers []*commissioned
	kioskBy, dispBy    map[string]*commissioned
	// stateDir holds the controllers' storage; made by the run unless
	// Config.StateDir is set, and removed by teardown then.
	stateDir, madeDir string

	// setupCmds, setupNodes, setupTook and connectTook describe the setup:
	// commands applied, nodes that applied them, how long that took, and
	// how long connecting the readers took.
	setupCmds, setupNodes  int
	setupTook, connectTook time.Duration

	// madePeople and madeDevices are the IDs of every person and device
	// the setup asked for, for teardown (which ignores those the site never
	// made, so that an answer lost in transit leaks nothing).
	madePeople  []string
	madeDevices []string
}

// label names an entity of the scenario at the site.
func (d *deployment) label(name string) string { return name + " (sim " + d.scn.Name + ")" }

// deploy applies scn's setup to the site with the given readers and
// connects them. On failure it undoes what it made and returns an error
// wrapping ErrSetup.
func (r *Runner) deploy(ctx context.Context, scn *scenario.Scenario, readers []readerSpec) (*deployment, error) {
	site, err := r.siteInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	d := &deployment{
		r: r, scn: scn, site: site, base: time.Now(),
		zones: map[string]string{}, doors: map[string]string{}, schedules: map[string]string{},
		groups: map[string]string{}, tenants: map[string]string{},
		people: map[string]*accessv1.Person{}, cards: map[access.CardNumber]*accessv1.Card{},
		grants: map[[2]string]string{}, byName: map[string]*commissioned{}, ctls: map[string]*commissioned{},
		kioskBy: map[string]*commissioned{}, dispBy: map[string]*commissioned{},
	}
	cmds, whats, err := d.commands(readers)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, r.cfg.ChangeTimeout+time.Duration(len(cmds)/100)*time.Second)
	a, err := r.change(ctx2, site, cmds)
	cancel()
	if err == nil {
		if errs := resultErrors(a.results, whats); len(errs) > 0 {
			err = fmt.Errorf("the site refused %d of %d setup commands:\n  %s", len(errs), len(cmds), strings.Join(errs, "\n  "))
		}
	}
	d.setupCmds, d.setupNodes, d.setupTook = len(cmds), a.nodes, a.all
	if err == nil {
		t := time.Now()
		err = d.connect(ctx)
		d.connectTook = time.Since(t)
	}
	if err != nil {
		d.teardown(ctx)
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return d, nil
}

// ms returns t in Unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// commands builds the setup commands, with a description of each for
// errors.
func (d *deployment) commands(readers []readerSpec) ([]*raftv1.Command, []string, error) {
	var (
		cmds  []*raftv1.Command
		whats []string
	)
	add := func(line int, what string, c *raftv1.Command) {
		cmds = append(cmds, c)
		whats = append(whats, d.scn.Name+":"+strconv.Itoa(line)+": "+what)
	}
	site := d.site.id
	for _, z := range d.scn.Zones {
		id := d.r.newID()
		d.zones[z.Name] = id
		add(z.Line, "zone "+z.Name, &raftv1.Command{Op: &raftv1.Command_PutZone{PutZone: &accessv1.Zone{
			Id: id, SiteId: site, Name: d.label(z.Name), AntiPassback: z.AntiPassback}}})
	}
	for _, x := range d.scn.Doors {
		id := d.r.newID()
		d.doors[x.Name] = id
		add(x.Line, "door "+x.Name, &raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{
			Id: id, SiteId: site, ZoneId: d.zones[x.Zone], Name: d.label(x.Name), Direction: accessv1.Direction(x.Direction),
			HighSecurity: x.HighSecurity, MaxOfflineMs: x.MaxOffline.Milliseconds()}}})
	}
	for _, s := range d.scn.Schedules {
		id := d.r.newID()
		d.schedules[s.Name] = id
		var ws []*accessv1.Window
		for _, w := range s.Windows(d.base) {
			ws = append(ws, &accessv1.Window{Weekday: int32(w.Day), StartMinute: int32(w.Start), EndMinute: int32(w.End)})
		}
		add(s.Line, "schedule "+s.Name, &raftv1.Command{Op: &raftv1.Command_PutSchedule{PutSchedule: &accessv1.Schedule{
			Id: id, SiteId: site, Name: d.label(s.Name), Windows: ws, ClosedOnHolidays: s.ClosedOnHolidays}}})
	}
	for _, g := range d.scn.Groups {
		id := d.r.newID()
		d.groups[g.Name] = id
		var doors []string
		for _, x := range g.Doors {
			doors = append(doors, d.doors[x])
		}
		add(g.Line, "group "+g.Name, &raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{
			Id: id, SiteId: site, Name: d.label(g.Name), DoorIds: doors, ScheduleId: d.schedules[g.Schedule],
			Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}})
	}
	for _, t := range d.scn.Tenants {
		d.tenants[t] = d.r.newID()
	}
	for _, p := range d.scn.People {
		pm := &accessv1.Person{
			Id: d.r.newID(), Kind: accessv1.PersonKind(p.Kind), OccupierId: d.tenants[p.Tenant], Name: d.label(p.Name),
			Active: !p.Inactive, OfflineAccess: p.OfflineAccess,
			ValidFromMs: ms(p.ValidFrom.Resolve(d.base)), ValidUntilMs: ms(p.ValidUntil.Resolve(d.base)),
		}
		d.people[p.Name] = pm
		d.madePeople = append(d.madePeople, pm.Id)
		add(p.Line, "person "+p.Name, &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: pm}})
		for _, n := range p.Cards {
			c := &accessv1.Card{Number: uint64(n), PersonId: pm.Id, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE,
				ValidFromMs: ms(p.CardValidFrom.Resolve(d.base)), ValidUntilMs: ms(p.CardValidUntil.Resolve(d.base))}
			d.cards[n] = c
			add(p.Line, "card "+n.String()+" of "+p.Name+" (is the number already in use at the site?)",
				&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: c}})
		}
		for _, g := range p.Groups {
			id := d.r.newID()
			d.grants[[2]string{p.Name, g}] = id
			add(p.Line, "grant of "+g+" to "+p.Name, &raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{
				Id: id, HolderId: pm.Id, GroupId: d.groups[g]}}})
		}
	}
	rr := 0
	for _, spec := range readers {
		c := &commissioned{readerSpec: spec, id: d.r.newID(), doorID: d.doors[spec.door]}
		brokers := d.r.cfg.Brokers
		switch {
		case spec.broker > len(brokers):
			return nil, nil, fmt.Errorf("reader %s is pinned to broker %d, but only %d MQTT addresses were given", spec.name, spec.broker, len(brokers))
		case spec.broker > 0:
			c.addr = brokers[spec.broker-1]
		default:
			c.addr = brokers[rr%len(brokers)]
			rr++
		}
		var b [24]byte // 192 bits: more than the protocol's 128
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, err
		}
		c.secret = base64.RawURLEncoding.EncodeToString(b[:])
		d.madeDevices = append(d.madeDevices, c.id)
		line, what, kind := 0, "reader ", accessv1.DeviceKind_DEVICE_KIND_READER
		switch {
		case spec.kind == mqttproto.KindKiosk:
			d.kiosks = append(d.kiosks, c)
			d.kioskBy[spec.name] = c
			what, kind = "kiosk ", accessv1.DeviceKind_DEVICE_KIND_KIOSK
			if x, ok := d.scn.Kiosk(spec.name); ok {
				line = x.Line
			}
		case spec.kind == mqttproto.KindDispenser:
			d.dispensers = append(d.dispensers, c)
			d.dispBy[spec.name] = c
			what, kind = "dispenser ", accessv1.DeviceKind_DEVICE_KIND_DISPENSER
			if x, ok := d.scn.Dispenser(spec.name); ok {
				line = x.Line
			}
		case spec.controller:
			d.controllers = append(d.controllers, c)
			d.ctls[spec.name] = c
			what, kind = "controller ", accessv1.DeviceKind_DEVICE_KIND_DOOR
			if x, ok := d.scn.Controller(spec.name); ok {
				line = x.Line
			}
		default:
			d.readers = append(d.readers, c)
			d.byName[spec.name] = c
			for _, sr := range d.scn.Readers {
				if sr.Name == spec.name {
					line = sr.Line
				}
			}
		}
		add(line, what+spec.name, &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{
			Id: c.id, SiteId: site, Kind: kind, Name: d.label(spec.name),
			DoorId: c.doorID, SecretHash: access.HashSecret([]byte(c.secret))}}})
	}
	return cmds, whats, nil
}

// connect connects every reader and door controller, all at once, each
// through its fault proxy when it has one.
func (d *deployment) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultConnectTimeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	if len(d.controllers) > 0 {
		d.stateDir = d.r.cfg.StateDir
		if d.stateDir == "" {
			dir, err := os.MkdirTemp("", "gatehouse-sim-")
			if err != nil {
				return fmt.Errorf("controller storage: %w", err)
			}
			d.stateDir, d.madeDir = dir, dir
		}
	}
	for _, c := range append(slices.Clone(d.readers), d.controllers...) {
		if c.proxy != nil || !c.readerSpec.proxy {
			continue
		}
		p, err := fault.Listen("127.0.0.1:0", c.addr, d.r.log)
		if err != nil {
			return err
		}
		c.proxy = p
	}
	for _, c := range d.readers {
		wg.Go(func() {
			rd, err := device.DialReader(ctx, device.ReaderConfig{
				Config: device.Config{
					Broker: c.dialAddr(), Secret: c.secret, TLS: d.r.cfg.TLS, Log: d.r.log,
					Device: mqttproto.Device{Site: d.site.id, Kind: mqttproto.KindReader, ID: c.id},
				},
				Door: access.ID(c.doorID),
			})
			if err != nil {
				fail(fmt.Errorf("reader %s: %w", c.name, err))
				return
			}
			mu.Lock()
			c.reader = rd
			mu.Unlock()
		})
	}
	for _, c := range d.controllers {
		c.dir = filepath.Join(d.stateDir, c.id)
		wg.Go(func() {
			if err := d.startController(ctx, c); err != nil {
				fail(fmt.Errorf("controller %s: %w", c.name, err))
			}
		})
	}
	for _, c := range append(slices.Clone(d.kiosks), d.dispensers...) {
		wg.Go(func() {
			conf := device.Config{Broker: c.dialAddr(), Secret: c.secret, TLS: d.r.cfg.TLS, Log: d.r.log,
				Device: mqttproto.Device{Site: d.site.id, Kind: c.kind, ID: c.id}}
			var err error
			if c.kind == mqttproto.KindKiosk {
				var k *device.Kiosk
				k, err = device.DialKiosk(ctx, device.KioskConfig{Config: conf})
				mu.Lock()
				c.kiosk = k
				mu.Unlock()
			} else {
				var ds *device.Dispenser
				ds, err = device.DialDispenser(ctx, device.DispenserConfig{Config: conf, Stack: c.stack})
				mu.Lock()
				c.disp = ds
				mu.Unlock()
			}
			if err != nil {
				fail(fmt.Errorf("%s %s: %w", c.kind, c.name, err))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dialAddr is the address the device dials: its proxy's, or its broker's.
func (c *commissioned) dialAddr() string {
	if c.proxy != nil {
		return c.proxy.Addr()
	}
	return c.addr
}

// startController starts controller c on its storage and waits until it
// has connected (within ctx).
func (d *deployment) startController(ctx context.Context, c *commissioned) error {
	ctl, err := device.DialController(ctx, device.ControllerConfig{
		Config: device.Config{
			Broker: c.dialAddr(), Secret: c.secret, TLS: d.r.cfg.TLS, Log: d.r.log,
			Device: mqttproto.Device{Site: d.site.id, Kind: mqttproto.KindDoor, ID: c.id},
		},
		Doors:           []access.ID{access.ID(c.doorID)},
		StateDir:        c.dir,
		Heartbeat:       d.r.cfg.Heartbeat,
		DecisionTimeout: d.r.cfg.ControllerDecisionTimeout,
	})
	if err != nil {
		return err
	}
	c.ctl = ctl
	if c.proxy != nil && c.proxy.IsCut() {
		return nil // restarted while cut off: it cannot connect, rightly
	}
	for !ctl.Status().LinkUp {
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("not connected: %w", err)
		}
	}
	return nil
}

// teardown disconnects the readers and, unless the runner keeps things,
// removes the devices and people it made (which frees the cards). It
// reports what it could not remove to the runner's output. It runs even
// when ctx is cancelled, with a deadline of its own.
func (d *deployment) teardown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range d.readers {
		if c.reader != nil {
			wg.Go(func() { _ = c.reader.Close() })
		}
	}
	for _, c := range d.controllers {
		if c.ctl != nil {
			wg.Go(func() { _ = c.ctl.Close() })
		}
	}
	for _, c := range d.kiosks {
		if c.kiosk != nil {
			wg.Go(func() { _ = c.kiosk.Close() })
		}
	}
	for _, c := range d.dispensers {
		if c.disp != nil {
			wg.Go(func() { _ = c.disp.Close() })
		}
	}
	wg.Wait()
	for _, c := range append(slices.Clone(d.readers), d.controllers...) {
		if c.proxy != nil {
			c.proxy.Close()
		}
	}
	if d.madeDir != "" && !d.r.cfg.Keep {
		os.RemoveAll(d.madeDir)
	}
	if d.r.cfg.Keep || len(d.madePeople)+len(d.madeDevices) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.r.cfg.ChangeTimeout)
	defer cancel()
	var (
		cmds  []*raftv1.Command
		whats []string
	)
	for _, id := range d.madeDevices {
		cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_RemoveDevice{RemoveDevice: &raftv1.RemoveDevice{DeviceId: id}}})
		whats = append(whats, "remove device "+id)
	}
	for _, id := range d.madePeople {
		cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_DeletePerson{DeletePerson: &raftv1.DeletePerson{PersonId: id}}})
		whats = append(whats, "delete person "+id)
	}
	res, err := d.r.apply(ctx, cmds)
	if err == nil {
		if errs := resultErrors(res, whats, string(access.NotFound)); len(errs) > 0 {
			err = errors.New(strings.Join(errs, "; "))
		}
	}
	if err != nil {
		fmt.Fprintf(d.r.cfg.Out, "cleanup of %s incomplete: %v\n", d.scn.Name, err)
		return
	}
	d.madeDevices, d.madePeople = nil, nil
}

// clonePerson returns a copy of the person record of name, for a change.
func (d *deployment) clonePerson(name string) *accessv1.Person {
	return proto.CloneOf(d.people[name])
}
