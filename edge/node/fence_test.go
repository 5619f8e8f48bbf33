package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// cutProxy forwards TCP connections to a target until cut; while cut it
// drops every connection, so the node behind it is partitioned for
// whatever reaches it through the proxy.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(in) || !p.track(out) {
			in.Close()
			if out != nil {
				out.Close()
			}
			continue
		}
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// Cut drops every connection and refuses new ones until Heal.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Heal lets connections through again.
func (p *cutProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitLease waits until every node holds a valid lease.
func waitLease(t *testing.T, nodes ...*Node) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for !n.Raft().LeaseValid(time.Now()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s holds no lease after 20 s", n.cfg.NodeID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRevocationFencesCutOffFollower is the safety rule of DESIGN.md §5:
// once a revocation is acknowledged, no node of the site grants the card,
// including a follower cut off from the leader during the revocation. The
// acknowledgement waits until that follower's lease has certainly run out,
// and the follower, deciding from its stale state, falls back to the
// offline rule.
func TestRevocationFencesCutOffFollower(t *testing.T) {
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	raft3 := freeAddr(t)
	proxy := newCutProxy(t, raft3)
	var nodes []*Node
	for i := range 3 {
		cfg := Config{
			NodeID: fmt.Sprintf("n%d", i+1), SiteID: testSite, SiteName: "Test", TimeZone: "UTC",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			ClusterToken: "secret", APIToken: "api", TuneRaft: fastRaft,
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = nodes[0].URL()
		}
		if i == 2 {
			// The leader reaches node 3's Raft transport only through the proxy.
			cfg.RaftAddr, cfg.RaftAdvertise = raft3, proxy.Addr()
		}
		nd := New(cfg, log)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.Open(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
		t.Cleanup(func() { nd.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	door, group, person, grant := id(t), id(t), id(t), id(t)
	res, err := nodes[0].Propose(ctx,
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "front"}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 9, PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: grant, HolderId: person, GroupId: group}}},
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
	if d := nodes[2].Decide(9, access.ID(door), time.Now()); !d.Grant {
		t.Fatalf("before the cut, node 3 denies: %v", d.Reason)
	}

	proxy.Cut()
	var leader *Node
	for _, n := range nodes[:2] {
		if n.Raft().Status().State == "leader" {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader among the nodes on the leader's side of the cut")
	}
	res, err = leader.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: grant}}})
	if err != nil {
		t.Fatalf("revocation: %v", err)
	}
	// Acknowledged: node 3 has not applied it (its Raft transport is cut)...
	if got := nodes[2].Raft().Status().AppliedIndex; got >= res[0].GetIndex() {
		t.Fatalf("node 3 applied the revocation (%d >= %d) through a cut; the test did not partition it", got, res[0].GetIndex())
	}
	// ...yet none of the three grants the card any more.
	for _, n := range nodes {
		if d := n.Decide(9, access.ID(door), time.Now()); d.Grant {
			t.Fatalf("%s grants a revoked card after the revocation was acknowledged", n.cfg.NodeID)
		}
	}
	if d := nodes[2].Decide(9, access.ID(door), time.Now()); d.Reason != access.ReasonNoOfflineAccess {
		t.Errorf("cut-off node 3 denies with %v, want no_offline_access (it decides under the offline rule)", d.Reason)
	}

	// Healed, node 3 catches up and decides online again, from the new state.
	proxy.Heal()
	if err := nodes[2].Raft().WaitApplied(ctx, res[0].GetIndex()); err != nil {
		t.Fatal(err)
	}
	waitLease(t, nodes[2])
	if d := nodes[2].Decide(9, access.ID(door), time.Now()); d.Grant || d.Reason != access.ReasonNoGroup {
		t.Fatalf("healed node 3: %+v, want no_group", d)
	}
}
