package node

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/doors"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// fastDoors makes heartbeats and rebuilds quick, for tests.
func fastDoors(c *Config) {
	c.TuneDoors = func(d *doors.Config) {
		d.Heartbeat = 300 * time.Millisecond
		d.Debounce = 20 * time.Millisecond
	}
}

// doorCtl plays a door controller over MQTT with hardware/mqttproto: it
// publishes states and events and keeps the site's commands until a test
// awaits them.
type doorCtl struct {
	t    *testing.T
	dev  mqttproto.Device
	door access.ID
	c    paho.Client

	mu     sync.Mutex
	cmds   []mqttproto.DoorCmd
	notify chan struct{}
}

func connectDoorCtl(t *testing.T, brokerAddr string, id, door access.ID, secret string) *doorCtl {
	t.Helper()
	dev := mqttproto.Device{Site: testSite, Kind: mqttproto.KindDoor, ID: string(id)}
	d := &doorCtl{t: t, dev: dev, door: door, notify: make(chan struct{}, 1)}
	willTopic, willPayload, err := mqttproto.Will(dev)
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://"+brokerAddr).
		SetClientID(dev.Username()).SetUsername(dev.Username()).SetPassword(secret).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(true).
		SetBinaryWill(willTopic, willPayload, mqttproto.QoS, true)
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("door controller connect to %s: %v", brokerAddr, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(50) })
	tok := d.c.Subscribe(dev.Topic(mqttproto.ChannelCmd).String(), mqttproto.QoS, func(_ paho.Client, m paho.Message) {
		cmd, err := mqttproto.DecodeDoorCmd(m.Payload())
		if err != nil {
			t.Errorf("undecodable command: %v", err)
			return
		}
		d.mu.Lock()
		d.cmds = append(d.cmds, cmd)
		d.mu.Unlock()
		select {
		case d.notify <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return d
}

func (d *doorCtl) publish(topic string, payload []byte) {
	d.t.Helper()
	if tok := d.c.Publish(topic, mqttproto.QoS, topic == d.dev.Topic(mqttproto.ChannelState).String(), payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// online publishes the controller's online state, holding cache version
// held of its door.
func (d *doorCtl) online(held uint64, lastSeq uint64) {
	d.t.Helper()
	b, err := mqttproto.State{Online: true, Firmware: "test-1", LastSeq: lastSeq, Door: &mqttproto.DoorStatus{
		Doors: []mqttproto.DoorState{{Door: d.door, Mode: mqttproto.DoorNormal, CacheVersion: held}}}}.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	d.publish(d.dev.Topic(mqttproto.ChannelState).String(), b)
}

// event publishes a door event.
func (d *doorCtl) event(e mqttproto.DoorEvent) {
	d.t.Helper()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b, err := e.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	d.publish(d.dev.Topic(mqttproto.ChannelEvent).String(), b)
}

// await waits until take, called with every command kept so far, returns
// true; take removes what it used.
func (d *doorCtl) await(what string, take func(cmds *[]mqttproto.DoorCmd) bool) {
	d.t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		d.mu.Lock()
		ok := take(&d.cmds)
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-d.notify:
		case <-timeout.C:
			d.t.Fatalf("no %s within 15 s", what)
		}
	}
}

// awaitCmd waits for a command for which match holds and removes it.
func (d *doorCtl) awaitCmd(what string, match func(mqttproto.DoorCmd) bool) {
	d.t.Helper()
	d.await(what, func(cmds *[]mqttproto.DoorCmd) bool {
		i := slices.IndexFunc(*cmds, match)
		if i >= 0 {
			*cmds = slices.Delete(*cmds, i, i+1)
		}
		return i >= 0
	})
}

// awaitAck waits for an ack of seq (with resend as given).
func (d *doorCtl) awaitAck(seq uint64, resend bool) {
	d.t.Helper()
	d.awaitCmd("ack", func(c mqttproto.DoorCmd) bool {
		return c.Type == mqttproto.DoorAck && c.Seq == seq && c.Resend == resend
	})
}

// awaitCache returns the first complete offline cache version for which
// match holds, assembled from its parts, and removes the parts of it and
// of every earlier version.
func (d *doorCtl) awaitCache(match func(mqttproto.OfflineCache) bool) mqttproto.OfflineCache {
	d.t.Helper()
	var got mqttproto.OfflineCache
	d.await("offline cache", func(cmds *[]mqttproto.DoorCmd) bool {
		parts := map[uint64][]mqttproto.DoorCmd{}
		for _, c := range *cmds {
			if c.Type != mqttproto.DoorOfflineCache {
				continue
			}
			if c.Door != d.door || c.Base != 0 {
				d.t.Errorf("cache part for door %s base %d; want a full cache of %s", c.Door, c.Base, d.door)
			}
			parts[c.Version] = append(parts[c.Version], c)
			if len(parts[c.Version]) < c.Parts {
				continue
			}
			oc := mqttproto.OfflineCache{Door: c.Door, Version: c.Version, HighSecurity: c.HighSecurity, MaxOffline: c.MaxOffline}
			for _, p := range parts[c.Version] {
				oc.Entries = append(oc.Entries, p.Entries...)
			}
			if match(oc) {
				got = oc
				*cmds = slices.DeleteFunc(*cmds, func(x mqttproto.DoorCmd) bool {
					return x.Type == mqttproto.DoorOfflineCache && x.Version <= oc.Version
				})
				return true
			}
		}
		return false
	})
	return got
}

func cards(c mqttproto.OfflineCache) []access.CardNumber {
	var out []access.CardNumber
	for _, e := range c.Entries {
		out = append(out, e.Card)
	}
	return out
}

// deviceEvents returns the device sequence numbers of dev's events in n's
// replicated event log, in log order, failing on a decision not marked
// offline.
func deviceEvents(t *testing.T, n *Node, dev access.ID) []uint64 {
	t.Helper()
	var out []uint64
	err := n.Raft().View(func(txn *badger.Txn) error {
		evs, err := sitestate.ReadEvents(txn, 0, 10_000)
		for _, e := range evs {
			if e.GetDeviceId() != string(dev) {
				continue
			}
			if e.GetType() == "" && !e.GetOffline() {
				t.Errorf("device decision %d not marked offline", e.GetDeviceSeq())
			}
			out = append(out, e.GetDeviceSeq())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// proposeRetry proposes cmds (idempotent puts) again when the outcome is
// unknown, as when leadership moves while committing.
func proposeRetry(ctx context.Context, n *Node, cmds ...*raftv1.Command) ([]*edgev1.CommandResult, error) {
	for {
		res, err := n.Propose(ctx, cmds...)
		if err == nil || ctx.Err() != nil || !errors.Is(err, raftnode.ErrIndeterminate) {
			return res, err
		}
	}
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDoorControllerOverMQTT plays a door controller against a real 3-node
// site: it gets its full offline cache on connect and a new version on
// every relevant change; its events are recorded once each, in order, and
// acknowledged after commit; duplicates are ignored, gaps get a resend;
// and the acknowledged watermark survives a leader change, at another
// node's broker.
func TestDoorControllerOverMQTT(t *testing.T) {
	nodes := MustOpenSiteWith(t, 3, fastDoors)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	door, other, group, sched, grp2 := id(t), id(t), id(t), id(t), id(t)
	alice, bob, carol, dan := id(t), id(t), id(t), id(t)
	dev, dev2 := access.ID(id(t)), access.ID(id(t))
	person := func(pid string, offline bool) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: pid,
			Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true, OfflineAccess: offline}}}
	}
	card := func(n uint64, pid string) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: n, PersonId: pid, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}}
	}
	grant := func(pid, g string) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: id(t), HolderId: pid, GroupId: g}}}
	}
	device := func(d access.ID, dr string) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(d), SiteId: testSite,
			Kind: accessv1.DeviceKind_DEVICE_KIND_DOOR, Name: "ctl", DoorId: dr, SecretHash: access.HashSecret([]byte("door-secret-0001"))}}}
	}
	res, err := proposeRetry(ctx, nodes[0],
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "server room",
			HighSecurity: true, MaxOfflineMs: time.Hour.Milliseconds()}}},
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: other, SiteId: testSite, Name: "other"}}},
		&raftv1.Command{Op: &raftv1.Command_PutSchedule{PutSchedule: &accessv1.Schedule{Id: sched, SiteId: testSite, Name: "office",
			Windows: []*accessv1.Window{{Weekday: 1, StartMinute: 8 * 60, EndMinute: 18 * 60}}}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all",
			DoorIds: []string{door, other}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: grp2, SiteId: testSite, Name: "office hours",
			DoorIds: []string{door}, ScheduleId: sched, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		person(alice, true), card(41, alice), grant(alice, group),
		person(bob, false), card(42, bob), grant(bob, group), // no offline access
		person(carol, true), card(43, carol), grant(carol, group),
		person(dan, true), card(44, dan), grant(dan, grp2), // scheduled group only
		device(dev, door), device(dev2, other),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Raft().WaitApplied(ctx, res[len(res)-1].GetIndex()); err != nil {
			t.Fatal(err)
		}
	}
	// Leadership may move under load (a starved leader steps down): wait
	// until some node leads, then pick the others' roles.
	leader, follower, spare := -1, -1, -1
	waitFor(t, "a leader", func() bool {
		leader, follower, spare = -1, -1, -1
		for i, n := range nodes {
			switch {
			case n.Raft().Status().State == raftnode.StateLeader:
				leader = i
			case follower < 0:
				follower = i
			default:
				spare = i
			}
		}
		return leader >= 0 && follower >= 0 && spare >= 0
	})

	// 1. Connect at a follower's broker: a heartbeat, then the full cache
	// with exactly the offline-access cards of the door.
	ctl := connectDoorCtl(t, nodes[follower].MQTTAddr(), dev, access.ID(door), "door-secret-0001")
	ctl.online(0, 0)
	ctl.awaitCmd("heartbeat", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorHeartbeat })
	v1 := ctl.awaitCache(func(mqttproto.OfflineCache) bool { return true })
	if got, want := cards(v1), []access.CardNumber{41, 43}; !slices.Equal(got, want) {
		t.Fatalf("first cache: cards %v, want %v", got, want)
	}
	if !v1.HighSecurity || v1.MaxOffline != time.Hour {
		t.Errorf("first cache: high security %t, max offline %v", v1.HighSecurity, v1.MaxOffline)
	}
	for _, e := range v1.Entries {
		if e.Until.IsZero() || e.Until.After(time.Now().Add(25*time.Hour)) {
			t.Errorf("card %d: until %v is not bounded by the refresh horizon", e.Card, e.Until)
		}
	}
	// Heartbeats keep coming while the site has nothing else to send.
	ctl.awaitCmd("heartbeat", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorHeartbeat })

	// 2. Offline access turned off, then a card revoked: a new version
	// each time, without them.
	if _, err := proposeRetry(ctx, nodes[leader], person(carol, false)); err != nil {
		t.Fatal(err)
	}
	v2 := ctl.awaitCache(func(c mqttproto.OfflineCache) bool { return !slices.Contains(cards(c), 43) })
	if got, want := cards(v2), []access.CardNumber{41}; !slices.Equal(got, want) || v2.Version <= v1.Version {
		t.Fatalf("after turning off offline access: version %d cards %v, want > %d and %v", v2.Version, got, v1.Version, want)
	}
	if _, err := proposeRetry(ctx, nodes[spare], &raftv1.Command{Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{
		Number: 41, Status: accessv1.CardStatus_CARD_STATUS_SUSPENDED}}}); err != nil {
		t.Fatal(err)
	}
	v3 := ctl.awaitCache(func(c mqttproto.OfflineCache) bool { return len(c.Entries) == 0 })
	if v3.Version <= v2.Version {
		t.Errorf("after revoking the card: version %d, want > %d", v3.Version, v2.Version)
	}

	// 3. Buffered events after (re)connect: recorded once each, in order,
	// then acknowledged.
	at := time.Now().Add(-time.Minute)
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineStarted, Seq: 1, Time: at})
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineDecision, Seq: 2, Time: at, Door: access.ID(door),
		Card: 41, Grant: true, Reason: access.ReasonGranted, RequestID: "t-1", CacheVersion: v1.Version})
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorForcedOpen, Seq: 3, Time: at, Door: access.ID(door)})
	ctl.awaitAck(3, false)
	if got := deviceEvents(t, nodes[follower], dev); !slices.Equal(got, seqs(1, 3)) {
		t.Fatalf("recorded device events %v, want 1..3", got)
	}
	// The alarm shows in the node's status (which the manager updates
	// after publishing the ack the controller saw).
	mq, _ := nodes[follower].DoorManagers()
	waitFor(t, "the forced_open alarm and ack 3 in the door status", func() bool {
		st := mq.Devices()
		return len(st) == 1 && slices.Equal(st[0].Alarms, []string{"forced_open"}) && st[0].Acked == 3
	})

	// 4. A duplicate is ignored (and acknowledged again); a gap gets a
	// resend; the resent events are recorded.
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorForcedOpen, Seq: 3, Time: at, Door: access.ID(door)})
	ctl.awaitAck(3, false)
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineEnded, Seq: 5, Time: at})
	ctl.awaitAck(3, true)
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorClosed, Seq: 4, Time: at, Door: access.ID(door)})
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineEnded, Seq: 5, Time: at})
	ctl.awaitAck(5, false)

	// 5. Malformed payloads and another device's topic change nothing:
	// the next valid event is the only one recorded after them.
	ctl.publish(ctl.dev.Topic(mqttproto.ChannelEvent).String(), []byte(`{"v":1,"type":"door_opened","seq":6}`))
	ctl.publish(ctl.dev.Topic(mqttproto.ChannelEvent).String(), []byte(`not json`))
	foreign := mqttproto.Device{Site: testSite, Kind: mqttproto.KindDoor, ID: string(dev2)}
	b, _ := mqttproto.DoorEvent{Type: mqttproto.DoorForcedOpen, Seq: 1, Time: at, Door: access.ID(other)}.Marshal()
	// The broker refuses that publish and may drop the connection: the
	// controller reconnects, as a real one would.
	ctl.c.Publish(foreign.Topic(mqttproto.ChannelEvent).String(), mqttproto.QoS, false, b).WaitTimeout(10 * time.Second)
	ctl.c.Disconnect(50)
	ctl = connectDoorCtl(t, nodes[follower].MQTTAddr(), dev, access.ID(door), "door-secret-0001")
	ctl.online(v3.Version, 5)
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOpened, Seq: 6, Time: at, Door: access.ID(door)})
	ctl.awaitAck(6, false)
	for _, n := range nodes {
		// The in-memory watermark moves in Apply, before the entry's
		// Badger transaction commits: wait for the log itself.
		waitFor(t, "events 1..6 on every node", func() bool { return len(deviceEvents(t, n, dev)) >= 6 })
		if got := deviceEvents(t, n, dev); !slices.Equal(got, seqs(1, 6)) || n.Machine().DeviceSeq(dev) != 6 {
			t.Fatalf("node %s: recorded device events %v (watermark %d), want 1..6", n.cfg.NodeID, got, n.Machine().DeviceSeq(dev))
		}
		if got := n.Machine().DeviceSeq(dev2); got != 0 || len(deviceEvents(t, n, dev2)) != 0 {
			t.Fatalf("node %s: the foreign publish was recorded (watermark %d)", n.cfg.NodeID, got)
		}
	}

	// 6. Leader change: the old leader leaves; the controller reconnects
	// at the spare node's broker, replays what it thinks unacked (5, 6)
	// and gets them acknowledged from the replicated watermark, not
	// recorded again.
	ctl.c.Disconnect(50)
	if err := nodes[leader].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new leader", func() bool {
		st := nodes[spare].Raft().Status()
		return st.LeaderID != "" && st.LeaderID != nodes[leader].cfg.NodeID
	})
	ctl = connectDoorCtl(t, nodes[spare].MQTTAddr(), dev, access.ID(door), "door-secret-0001")
	ctl.online(v3.Version, 6)
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOfflineEnded, Seq: 5, Time: at})
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorOpened, Seq: 6, Time: at, Door: access.ID(door)})
	ctl.awaitAck(6, false)
	c4 := ctl.awaitCache(func(mqttproto.OfflineCache) bool { return true })
	if c4.Version <= v3.Version || len(c4.Entries) != 0 {
		t.Errorf("cache after reconnect: version %d, %d entries; want > %d and none", c4.Version, len(c4.Entries), v3.Version)
	}
	ctl.event(mqttproto.DoorEvent{Type: mqttproto.DoorClosed, Seq: 7, Time: at, Door: access.ID(door)})
	ctl.awaitAck(7, false)
	for _, n := range []*Node{nodes[follower], nodes[spare]} {
		waitFor(t, "events 1..7", func() bool { return len(deviceEvents(t, n, dev)) >= 7 })
		if got := deviceEvents(t, n, dev); !slices.Equal(got, seqs(1, 7)) {
			t.Fatalf("node %s after leader change: recorded device events %v, want 1..7", n.cfg.NodeID, got)
		}
	}
}
