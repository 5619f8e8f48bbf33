package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// reader is a device client speaking the real protocol to one node's broker.
type reader struct {
	t    *testing.T
	dev  mqttproto.Device
	c    paho.Client
	door access.ID
	got  chan mqttproto.Decision
}

func connectReader(t *testing.T, brokerAddr string, site string, id access.ID, door access.ID, secret string) *reader {
	t.Helper()
	dev := mqttproto.Device{Site: site, Kind: mqttproto.KindReader, ID: string(id)}
	r := &reader{t: t, dev: dev, door: door, got: make(chan mqttproto.Decision, 16)}
	willTopic, willPayload, err := mqttproto.Will(dev)
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://"+brokerAddr).
		SetClientID(dev.Username()).SetUsername(dev.Username()).SetPassword(secret).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).
		SetBinaryWill(willTopic, willPayload, mqttproto.QoS, true)
	r.c = paho.NewClient(opts)
	if tok := r.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("reader connect to %s: %v", brokerAddr, tok.Error())
	}
	t.Cleanup(func() { r.c.Disconnect(50) })
	tok := r.c.Subscribe(dev.Topic(mqttproto.ChannelDecision).String(), mqttproto.QoS, func(_ paho.Client, m paho.Message) {
		d, err := mqttproto.DecodeDecision(m.Payload())
		if err != nil {
			t.Errorf("undecodable decision: %v", err)
			return
		}
		r.got <- d
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return r
}

// tap sends a tap and waits for its decision.
func (r *reader) tap(card access.CardNumber, requestID string) mqttproto.Decision {
	r.t.Helper()
	b, err := mqttproto.Tap{RequestID: requestID, Door: r.door, Card: card}.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if tok := r.c.Publish(r.dev.Topic(mqttproto.ChannelTap).String(), mqttproto.QoS, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("publish tap: %v", tok.Error())
	}
	for {
		select {
		case d := <-r.got:
			if d.RequestID == requestID {
				return d
			}
		case <-time.After(10 * time.Second):
			r.t.Fatalf("no decision for tap %s within 10 s", requestID)
		}
	}
}

// TestTapsOverMQTTOnEveryNode commissions a reader through Raft, taps at
// every node's embedded broker, and checks the decision, the replicated
// access event, and that a revocation acknowledged at one node is obeyed
// at every node's broker.
func TestTapsOverMQTTOnEveryNode(t *testing.T) {
	nodes := MustOpenSite(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	door, group, person, grant, dev := id(t), id(t), id(t), id(t), id(t)
	res, err := nodes[0].Propose(ctx,
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "front"}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 31, PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: grant, HolderId: person, GroupId: group}}},
		&raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: dev, SiteId: testSite, Kind: accessv1.DeviceKind_DEVICE_KIND_READER,
			Name: "front reader", DoorId: door, SecretHash: access.HashSecret([]byte("reader-secret-0001"))}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Raft().WaitApplied(ctx, res[len(res)-1].GetIndex()); err != nil {
			t.Fatal(err)
		}
	}
	waitLease(t, nodes...)
	taps := 0
	for i, n := range nodes {
		r := connectReader(t, n.MQTTAddr(), testSite, access.ID(dev), access.ID(door), "reader-secret-0001")
		d, k := tapOnline(t, n, r, 31, fmt.Sprintf("grant-%d", i))
		taps += k
		if !d.Grant || d.Node != n.cfg.NodeID || d.Mode != access.Online {
			t.Fatalf("node %d: decision %+v, want an online grant by %s", i, d, n.cfg.NodeID)
		}
		r.c.Disconnect(50)
	}
	// Each decision became one access event in the replicated log.
	deadline := time.Now().Add(20 * time.Second)
	for nodes[2].Machine().LastSeq() < uint64(taps) {
		if time.Now().After(deadline) {
			t.Fatalf("events recorded: %d, want %d", nodes[2].Machine().LastSeq(), taps)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if _, err := nodes[1].Propose(ctx, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: grant}}}); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		r := connectReader(t, n.MQTTAddr(), testSite, access.ID(dev), access.ID(door), "reader-secret-0001")
		if d, _ := tapOnline(t, n, r, 31, fmt.Sprintf("deny-%d", i)); d.Grant || d.Reason != access.ReasonNoGroup {
			t.Fatalf("node %d after revocation: %+v, want no_group", i, d)
		}
		r.c.Disconnect(50)
	}
}

// tapOnline taps card at r (connected to n) and returns the decision and
// how many taps it took. A node whose lease lapsed (its leader starved under
// load and stepped down) decides by the offline rule, rightly; once it holds
// a lease again it decides online, so an offline decision is tapped again
// (at most 5 times).
func tapOnline(t *testing.T, n *Node, r *reader, card access.CardNumber, requestID string) (mqttproto.Decision, int) {
	t.Helper()
	d, taps := r.tap(card, requestID), 1
	for try := 0; d.Mode == access.Offline && try < 5; try++ {
		waitLease(t, n)
		d = r.tap(card, fmt.Sprintf("%s-again-%d", requestID, try))
		taps++
	}
	return d, taps
}

// TestMQTTRefusesUnknownDevice checks the embedded broker refuses a device
// the site does not know and a known one with a wrong secret.
func TestMQTTRefusesUnknownDevice(t *testing.T) {
	nodes := MustOpenSite(t, 1)
	dev := mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: id(t)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + nodes[0].MQTTAddr()).
		SetClientID(dev.Username()).SetUsername(dev.Username()).SetPassword("nope").
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("an unknown device connected")
	}
}
