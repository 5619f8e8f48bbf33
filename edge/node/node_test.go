package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

const testSite = "01JTEST0S1TE00000000000000"

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func fastRaft(c *raftnode.Config) {
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
}

// MustOpenSite starts an n-node site on loopback and closes it at cleanup.
func MustOpenSite(t *testing.T, n int) []*Node {
	t.Helper()
	return MustOpenSiteWith(t, n, nil)
}

// MustOpenSiteWith is MustOpenSite with tune, when not nil, adjusting each
// node's config before it opens.
func MustOpenSiteWith(t *testing.T, n int, tune func(*Config)) []*Node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	var nodes []*Node
	for i := range n {
		cfg := Config{
			NodeID: fmt.Sprintf("n%d", i+1), SiteID: testSite, SiteName: "Test", TimeZone: "Europe/Berlin",
			DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			ClusterToken: "secret", APIToken: "api-secret", TuneRaft: fastRaft,
		}
		if tune != nil {
			tune(&cfg)
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = nodes[0].URL()
		}
		nd := New(cfg, log)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("open %s: %v", cfg.NodeID, err)
		}
		nodes = append(nodes, nd)
	}
	t.Cleanup(func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			if err := nodes[i].Close(); err != nil {
				t.Errorf("close %d: %v", i, err)
			}
		}
	})
	return nodes
}

func id(t *testing.T) string {
	v, err := access.NewIDGen(nil).New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// TestSiteDecidesOnEveryNode writes through a follower and checks that every
// node decides from the same replicated state, and that a revocation made
// through another follower is seen by every node once it has applied it.
func TestSiteDecidesOnEveryNode(t *testing.T) {
	nodes := MustOpenSite(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	door, group, person, grant := id(t), id(t), id(t), id(t)
	res, err := nodes[2].Propose(ctx,
		&raftv1.Command{Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: testSite, Name: "front"}}},
		&raftv1.Command{Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: testSite, Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 77, PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
		&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: grant, HolderId: person, GroupId: group}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	last := res[len(res)-1].GetIndex()
	for _, n := range nodes {
		if err := n.Raft().WaitApplied(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	// A node decides under the online rule only with a lease, which a
	// follower slowed down by a loaded machine may have let run out while
	// the leader fenced (that is the safety rule at work, not a failure).
	waitLease(t, nodes...)
	for _, n := range nodes {
		if d := n.Decide(77, access.ID(door), time.Now()); !d.Grant {
			t.Fatalf("%s denies: %v", n.cfg.NodeID, d.Reason)
		}
	}
	// Card numbers are unique within the site: binding 77 to someone else
	// is refused and changes nothing.
	other := id(t)
	_, err = nodes[1].Propose(ctx,
		&raftv1.Command{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: other, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "Q", Active: true}}},
		&raftv1.Command{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: 77, PersonId: other, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
	)
	if err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("binding a taken card number: err = %v, want conflict", err)
	}

	res, err = nodes[1].Propose(ctx, &raftv1.Command{Op: &raftv1.Command_RemoveGrant{RemoveGrant: &raftv1.RemoveGrant{GrantId: grant}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Raft().WaitApplied(ctx, res[0].GetIndex()); err != nil {
			t.Fatal(err)
		}
	}
	waitLease(t, nodes...)
	for _, n := range nodes {
		if d := n.Decide(77, access.ID(door), time.Now()); d.Grant || d.Reason != access.ReasonNoGroup {
			t.Fatalf("%s after revocation: %+v", n.cfg.NodeID, d)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{NodeID: "n1", SiteID: testSite, DataDir: "d", RaftAddr: "a", APIAddr: "b", ClusterToken: "t", APIToken: "u"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"OK", func(*Config) {}, ""},
		{"ErrNodeID", func(c *Config) { c.NodeID = "" }, "node_id"},
		{"ErrSiteID", func(c *Config) { c.SiteID = "x" }, "site_id"},
		{"ErrToken", func(c *Config) { c.ClusterToken = "" }, "cluster_token"},
		{"ErrAPIToken", func(c *Config) { c.APIToken = "" }, "api_token"},
		{"ErrJoinURL", func(c *Config) { c.Join = "127.0.0.1:7001" }, "want a URL"},
		{"ErrBootstrapJoin", func(c *Config) { c.Bootstrap, c.Join = true, "http://x" }, "exclude"},
		{"Uplink", func(c *Config) { c.Uplink = &UplinkConfig{HubURL: "https://hub", Token: "t"} }, ""},
		{"ErrUplinkURL", func(c *Config) { c.Uplink = &UplinkConfig{HubURL: "hub:443", Token: "t"} }, "hub_url"},
		{"ErrUplinkCredential", func(c *Config) { c.Uplink = &UplinkConfig{HubURL: "https://hub"} }, "token or a tls_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
