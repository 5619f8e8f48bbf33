package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// peopleSite is a site of the cardholder end-to-end test: its nodes, and a
// reader commissioned at each of its doors.
type peopleSite struct {
	id     string
	nodes  []*node.Node
	doors  []string
	reader map[string]string // door → reader device ID
}

const peopleReaderSecret = "reader-secret-0001"

func newTestID(t *testing.T) string {
	id, err := access.NewIDGen(nil).New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(id)
}

// openPeopleSite starts an n-node site replicating with hubURL, with doors
// and a reader at each, proposed through Raft (as commissioning does).
func openPeopleSite(t *testing.T, site, token, hubURL string, n, doors int) *peopleSite {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	s := &peopleSite{id: site, reader: map[string]string{}}
	for i := range n {
		cfg := node.Config{
			NodeID: fmt.Sprintf("%s-n%d", site[len(site)-4:], i+1), SiteID: site, SiteName: "Site " + site, TimeZone: "UTC",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			ClusterToken: "secret", APIToken: "api-secret-0123456789",
			Uplink: &node.UplinkConfig{HubURL: hubURL, Token: token},
			TuneRaft: func(c *raftnode.Config) {
				c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
			},
			TuneUplink: func(c *uplink.Config) {
				c.MinBackoff, c.MaxBackoff, c.LeaderPoll = 10*time.Millisecond, 200*time.Millisecond, 20*time.Millisecond
			},
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
			t.Fatalf("open %s: %v", cfg.NodeID, err)
		}
		s.nodes = append(s.nodes, nd)
	}
	t.Cleanup(func() {
		for i := len(s.nodes) - 1; i >= 0; i-- {
			_ = s.nodes[i].Close()
		}
	})
	var cmds []*raftv1.Command
	for i := range doors {
		door, dev := newTestID(t), newTestID(t)
		s.doors = append(s.doors, door)
		s.reader[door] = dev
		cmds = append(cmds,
			&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: site, Name: fmt.Sprintf("door %d", i+1)}}},
			&raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: dev, SiteId: site, Kind: accessv1.DeviceKind_DEVICE_KIND_READER,
				Name: fmt.Sprintf("reader %d", i+1), DoorId: door, SecretHash: access.HashSecret([]byte(peopleReaderSecret))}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.nodes[0].Propose(ctx, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range s.nodes {
		if err := nd.Raft().WaitApplied(ctx, res[len(res)-1].GetIndex()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// tap taps card at door on node nd's broker, as the door's reader, and
// returns the decision.
func tapMQTT(t *testing.T, s *peopleSite, nd *node.Node, door string, card access.CardNumber) mqttproto.Decision {
	t.Helper()
	dev := mqttproto.Device{Site: s.id, Kind: mqttproto.KindReader, ID: s.reader[door]}
	got := make(chan mqttproto.Decision, 4)
	opts := paho.NewClientOptions().AddBroker("tcp://" + nd.MQTTAddr()).SetClientID(dev.Username()).SetUsername(dev.Username()).
		SetPassword(peopleReaderSecret).SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("reader connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	if tok := c.Subscribe(dev.Topic(mqttproto.ChannelDecision).String(), mqttproto.QoS, func(_ paho.Client, m paho.Message) {
		if d, err := mqttproto.DecodeDecision(m.Payload()); err == nil {
			got <- d
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	req := newTestID(t)
	b, err := mqttproto.Tap{RequestID: req, Door: access.ID(door), Card: card}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(dev.Topic(mqttproto.ChannelTap).String(), mqttproto.QoS, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish tap: %v", tok.Error())
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-got:
			if d.RequestID == req {
				return d
			}
		case <-timeout:
			t.Fatalf("no decision within 10 s")
		}
	}
}

// decidesEverywhere waits until every node of every site decides card at
// each door as want says.
func decidesEverywhere(t *testing.T, what string, sites []*peopleSite, card access.CardNumber, want map[string]bool) {
	t.Helper()
	waitFor(t, what, 30*time.Second, func() (bool, string) {
		for _, s := range sites {
			for _, nd := range s.nodes {
				for door, grant := range want {
					if !nd.Raft().LeaseValid(time.Now()) {
						return false, "no lease at " + s.id
					}
					if d := nd.Decide(card, access.ID(door), time.Now()); d.Grant != grant && contains(s.doors, door) {
						return false, fmt.Sprintf("site %s node decides %v (%v) at door %s", s.id, d.Grant, d.Reason, door)
					}
				}
			}
		}
		return true, ""
	})
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// TestCardholdersAtTheDoors: a person created at the hub's API, active,
// with a card and groups at two sites, is granted over MQTT at their
// groups' doors only, on every node of both sites; deactivated, then
// deleted, they are denied everywhere; the number then serves someone else.
func TestCardholdersAtTheDoors(t *testing.T) {
	if testing.Short() {
		t.Skip("two sites and a hub")
	}
	const key = "people-e2e-admin-key-0123"
	siteA, siteB := newTestID(t), newTestID(t)
	tokA, tokB := "site-a-token-0123456789", "site-b-token-0123456789"
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(key), Role: auth.Admin}}
	cfg.SyncSites = []hub.SyncSite{{ID: siteA, Token: tokA}, {ID: siteB, Token: tokB}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	hubURL := "http://" + h.Addr()

	a := openPeopleSite(t, siteA, tokA, hubURL, 3, 2)
	b := openPeopleSite(t, siteB, tokB, hubURL, 1, 1)
	sites := []*peopleSite{a, b}
	waitFor(t, "the sites' doors at the hub", 30*time.Second, func() (bool, string) {
		n := len(h.State().Doors())
		return n == 3, fmt.Sprintf("%d doors", n)
	})

	ctx := context.Background()
	opt := connect.WithInterceptors(auth.Bearer(key))
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, hubURL, opt)
	gc := peoplev1connect.NewGroupServiceClient(http.DefaultClient, hubURL, opt)
	group := func(site, door string) string {
		res, err := gc.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: site, Name: "G", DoorIds: []string{door}}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetGroup().GetId()
	}
	ga, gb := group(siteA, a.doors[0]), group(siteB, b.doors[0])
	spec := &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_H10301, Facility: 7, Number: 4242}
	card := access.CardNumber(access.WiegandCredential{Format: access.H10301, Facility: 7, Card: 4242}.Number())
	created, err := pc.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "Ann Lee", Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER,
		Active: true, Cards: []*peoplev1.CardSpec{spec}, GroupIds: []string{ga, gb}}))
	if err != nil {
		t.Fatal(err)
	}
	ann := created.Msg.GetPerson().GetId()

	want := map[string]bool{a.doors[0]: true, a.doors[1]: false, b.doors[0]: true}
	decidesEverywhere(t, "granted at the groups' doors only", sites, card, want)
	for _, s := range sites {
		for _, nd := range s.nodes {
			for _, door := range s.doors {
				if d := tapMQTT(t, s, nd, door, card); d.Grant != want[door] {
					t.Fatalf("tap over MQTT at %s: %+v, want grant=%v", door, d, want[door])
				}
			}
		}
	}

	if _, err := pc.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: ann})); err != nil {
		t.Fatal(err)
	}
	denied := map[string]bool{a.doors[0]: false, a.doors[1]: false, b.doors[0]: false}
	decidesEverywhere(t, "denied everywhere once deactivated", sites, card, denied)
	if d := tapMQTT(t, b, b.nodes[0], b.doors[0], card); d.Grant {
		t.Fatalf("tap over MQTT after deactivation: %+v", d)
	}
	if _, err := pc.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: ann, Active: true})); err != nil {
		t.Fatal(err)
	}
	decidesEverywhere(t, "granted again once reactivated", sites, card, want)

	if _, err := pc.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: ann})); err != nil {
		t.Fatal(err)
	}
	decidesEverywhere(t, "denied everywhere once deleted", sites, card, denied)
	for _, nd := range a.nodes {
		if d := tapMQTT(t, a, nd, a.doors[0], card); d.Grant {
			t.Fatalf("tap over MQTT after deletion: %+v", d)
		}
	}

	// The number is free: it now opens site B's door for Bob.
	if _, err := pc.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: "Bob", Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER,
		Active: true, Cards: []*peoplev1.CardSpec{spec}, GroupIds: []string{gb}})); err != nil {
		t.Fatal(err)
	}
	decidesEverywhere(t, "the reused number grants its new holder", sites, card, map[string]bool{a.doors[0]: false, a.doors[1]: false, b.doors[0]: true})
	if d := tapMQTT(t, b, b.nodes[0], b.doors[0], card); !d.Grant {
		t.Fatalf("tap over MQTT by the new holder: %+v", d)
	}
}

// cacheWatcher plays a door controller over MQTT and assembles the
// offline caches the site pushes to it.
type cacheWatcher struct {
	dev    mqttproto.Device
	c      paho.Client
	mu     sync.Mutex
	parts  map[uint64][]mqttproto.DoorCmd
	caches []mqttproto.OfflineCache
}

func watchCache(t *testing.T, s *peopleSite, nd *node.Node, dev, door, secret string) *cacheWatcher {
	t.Helper()
	w := &cacheWatcher{dev: mqttproto.Device{Site: s.id, Kind: mqttproto.KindDoor, ID: dev}, parts: map[uint64][]mqttproto.DoorCmd{}}
	opts := paho.NewClientOptions().AddBroker("tcp://" + nd.MQTTAddr()).SetClientID(w.dev.Username()).SetUsername(w.dev.Username()).
		SetPassword(secret).SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(true)
	w.c = paho.NewClient(opts)
	if tok := w.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("door controller connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(50) })
	if tok := w.c.Subscribe(w.dev.Topic(mqttproto.ChannelCmd).String(), mqttproto.QoS, func(_ paho.Client, m paho.Message) {
		cmd, err := mqttproto.DecodeDoorCmd(m.Payload())
		if err != nil || cmd.Type != mqttproto.DoorOfflineCache {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.parts[cmd.Version] = append(w.parts[cmd.Version], cmd)
		if len(w.parts[cmd.Version]) == cmd.Parts {
			oc := mqttproto.OfflineCache{Door: cmd.Door, Version: cmd.Version}
			for _, p := range w.parts[cmd.Version] {
				oc.Entries = append(oc.Entries, p.Entries...)
			}
			w.caches = append(w.caches, oc)
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	b, err := mqttproto.State{Online: true, Firmware: "test-1", Door: &mqttproto.DoorStatus{
		Doors: []mqttproto.DoorState{{Door: access.ID(door), Mode: mqttproto.DoorNormal}}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if tok := w.c.Publish(w.dev.Topic(mqttproto.ChannelState).String(), mqttproto.QoS, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish state: %v", tok.Error())
	}
	return w
}

// latest returns the cards of the newest complete cache.
func (w *cacheWatcher) latest() ([]access.CardNumber, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.caches) == 0 {
		return nil, false
	}
	newest := w.caches[0]
	for _, c := range w.caches {
		if c.Version > newest.Version {
			newest = c
		}
	}
	var out []access.CardNumber
	for _, e := range newest.Entries {
		out = append(out, e.Card)
	}
	slices.Sort(out)
	return out, true
}

// TestOfflineAccessFromTheHub: of two people made at the hub with the
// same group, only the one with offline access is pushed into the door
// controller's offline cache; turning it off at the hub takes them out.
func TestOfflineAccessFromTheHub(t *testing.T) {
	if testing.Short() {
		t.Skip("a hub and a site")
	}
	const key = "people-offline-admin-key-0123"
	site, tok := newTestID(t), "site-o-token-0123456789"
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.APIKeys = []auth.Key{{ID: "admin", SHA256: auth.HashKey(key), Role: auth.Admin}}
	cfg.SyncSites = []hub.SyncSite{{ID: site, Token: tok}}
	h := hub.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	hubURL := "http://" + h.Addr()
	s := openPeopleSite(t, site, tok, hubURL, 1, 1)
	door, ctlID := s.doors[0], newTestID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.nodes[0].Propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{Id: ctlID, SiteId: site,
		Kind: accessv1.DeviceKind_DEVICE_KIND_DOOR, Name: "ctl", DoorId: door, SecretHash: access.HashSecret([]byte("door-secret-0001"))}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the site's door at the hub", 30*time.Second, func() (bool, string) { return len(h.State().Doors()) == 1, "" })

	opt := connect.WithInterceptors(auth.Bearer(key))
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, hubURL, opt)
	gc := peoplev1connect.NewGroupServiceClient(http.DefaultClient, hubURL, opt)
	g, err := gc.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{SiteId: site, Name: "G", DoorIds: []string{door}}))
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, card uint64, offline bool) string {
		res, err := pc.CreatePerson(ctx, connect.NewRequest(&peoplev1.CreatePersonRequest{Name: name, Kind: peoplev1.PersonKind_PERSON_KIND_ACCESS_USER,
			Active: true, OfflineAccess: offline, Cards: []*peoplev1.CardSpec{{Number: card}}, GroupIds: []string{g.Msg.GetGroup().GetId()}}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetPerson().GetId()
	}
	olly := create("Olly Offline", 41, true)
	create("Nora Online", 42, false)

	w := watchCache(t, s, s.nodes[0], ctlID, door, "door-secret-0001")
	cacheIs := func(what string, want []access.CardNumber) {
		t.Helper()
		waitFor(t, what, 30*time.Second, func() (bool, string) {
			got, ok := w.latest()
			return ok && slices.Equal(got, want), fmt.Sprintf("cache %v", got)
		})
	}
	cacheIs("only the offline-access card cached", []access.CardNumber{41})
	off := false
	if _, err := pc.UpdatePerson(ctx, connect.NewRequest(&peoplev1.UpdatePersonRequest{PersonId: olly, OfflineAccess: &off})); err != nil {
		t.Fatal(err)
	}
	cacheIs("offline access turned off at the hub empties the cache", nil)
}
