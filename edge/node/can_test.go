package node

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// TestDoorControllerOverCAN runs a 1-node site with a CAN bus on a real
// stream bridge hub over TCP loopback, and plays a controller on it with
// canbus.Controller: taps are decided (a repeat once), its cache is pushed
// after its state, and its events are recorded and acknowledged.
func TestDoorControllerOverCAN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := canbus.NewHub(ln, nil)
	go hub.Serve()
	t.Cleanup(func() { hub.Close() })

	door, group, alice, dev := id(t), id(t), id(t), access.ID(id(t))
	nodes := MustOpenSiteWith(t, 1, func(c *Config) {
		fastDoors(c)
		c.CAN = &CANConfig{Transport: "tcp", Address: ln.Addr().String(), Controllers: map[string]string{"11": string(dev)}}
	})
	n := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := proposeRetry(ctx, n,
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "lab"}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all",
			DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: alice,
			Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "A", Active: true, OfflineAccess: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 51, PersonId: alice, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: id(t), HolderId: alice, GroupId: group}}},
		&raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: string(dev), SiteId: testSite,
			Kind: accessv1.DeviceKind_DEVICE_KIND_DOOR, Name: "can ctl", DoorId: door, SecretHash: access.HashSecret([]byte("unused-on-can-0001"))}}},
	); err != nil {
		t.Fatal(err)
	}
	waitLease(t, n)

	bus, err := canbus.Open(ctx, canbus.Config{Transport: canbus.TransportTCP, Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	var (
		mu     sync.Mutex
		cmds   []mqttproto.DoorCmd
		notify = make(chan struct{}, 1)
	)
	ctl, err := canbus.NewController(bus, canbus.NodeConfig{Addr: 0x11}, func(c mqttproto.DoorCmd) {
		mu.Lock()
		cmds = append(cmds, c)
		mu.Unlock()
		select {
		case notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	await := func(what string, match func(mqttproto.DoorCmd) bool) mqttproto.DoorCmd {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			mu.Lock()
			i := slices.IndexFunc(cmds, match)
			var c mqttproto.DoorCmd
			if i >= 0 {
				c = cmds[i]
				cmds = slices.Delete(cmds, i, i+1)
			}
			mu.Unlock()
			if i >= 0 {
				return c
			}
			select {
			case <-notify:
			case <-timeout:
				t.Fatalf("no %s within 15 s", what)
			}
		}
	}

	// A tap, and its repeat: one decision, one access event.
	tap := mqttproto.Tap{RequestID: "can-1", Door: access.ID(door), Card: 51}
	for range 2 {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := ctl.Tap(tctx, tap)
		tcancel()
		if err != nil || !d.Grant || d.Mode != access.Online {
			t.Fatalf("tap over CAN: %+v, %v; want an online grant", d, err)
		}
	}
	waitFor(t, "the tap's access event", func() bool { return n.Machine().LastSeq() >= 1 })

	// State: a heartbeat and the full cache.
	if err := ctl.Send(ctx, mqttproto.State{Online: true, Firmware: "can-1", Door: &mqttproto.DoorStatus{
		Doors: []mqttproto.DoorState{{Door: access.ID(door), Mode: mqttproto.DoorNormal}}}}); err != nil {
		t.Fatal(err)
	}
	await("heartbeat", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorHeartbeat })
	c := await("offline cache", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorOfflineCache })
	if c.Parts != 1 || len(c.Entries) != 1 || c.Entries[0].Card != 51 {
		t.Fatalf("cache over CAN: %+v, want card 51 only", c)
	}

	// Events: recorded in order and acknowledged; a gap gets a resend.
	at := time.Now().Add(-time.Minute)
	for _, e := range []mqttproto.DoorEvent{
		{Type: mqttproto.DoorOfflineDecision, Seq: 1, Time: at, Door: access.ID(door), Card: 51, Grant: true, Reason: access.ReasonGranted},
		{Type: mqttproto.DoorHeldOpen, Seq: 2, Time: at, Door: access.ID(door)},
	} {
		if err := ctl.Send(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	await("ack 2", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorAck && c.Seq == 2 && !c.Resend })
	if err := ctl.Send(ctx, mqttproto.DoorEvent{Type: mqttproto.DoorClosed, Seq: 4, Time: at, Door: access.ID(door)}); err != nil {
		t.Fatal(err)
	}
	await("resend", func(c mqttproto.DoorCmd) bool { return c.Type == mqttproto.DoorAck && c.Seq == 2 && c.Resend })
	if got := deviceEvents(t, n, dev); !slices.Equal(got, seqs(1, 2)) {
		t.Fatalf("recorded device events %v, want 1..2", got)
	}
	if n.Machine().LastSeq() != 3 {
		t.Errorf("site events %d, want 3 (one tap, two device events)", n.Machine().LastSeq())
	}
	_, can := n.DoorManagers()
	if st := can.Devices(); len(st) != 1 || st[0].ID != dev || !slices.Equal(st[0].Alarms, []string{"held_open"}) {
		t.Errorf("CAN door status %+v, want %s with held_open", st, dev)
	}
}
