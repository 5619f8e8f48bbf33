package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// benchSite is a site of edge nodes started in-process on loopback the way
// `gatehouse edge` starts them: real Raft over TCP, the bolt log and Badger
// state under a data dir per node, and the product's default Raft timings
// (no TuneRaft). The benchmarks measure the product, not a test config.
type benchSite struct {
	siteID string
	log    *slog.Logger
	logLvl *slog.LevelVar // the nodes' log threshold
	cfgs   []node.Config  // with the addresses bound at first start
	nodes  []*node.Node   // nil while a node is down
	net    *raftNet       // the Raft proxies, for a site started with cuttable
}

// startSite opens an n-node site under dir: the first node bootstraps, the
// others join through it. It returns once every node sees n members and a
// leader. With cuttable, every node's Raft traffic passes a proxy of s.net
// so that a node can be cut off (see raftNet); each node's Raft transport
// then binds a port picked here, as a real node's configured address.
func startSite(ctx context.Context, dir string, n int, log *slog.Logger, cuttable bool) (_ *benchSite, err error) {
	siteID, err := access.NewIDGen(rand.Reader).New(time.Now())
	if err != nil {
		return nil, err
	}
	s := &benchSite{siteID: string(siteID), logLvl: new(slog.LevelVar)}
	s.log = nodeLogger(log, s.logLvl)
	// A forming cluster logs its elections and log catch-up as warnings;
	// the nodes' logs start once it has formed.
	lvl := s.logLvl.Level()
	s.logLvl.Set(quiet)
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("bench-node-%d", i+1))
	}
	if cuttable {
		s.net = newRaftNet()
	}
	for i, id := range ids {
		cfg := node.Config{
			NodeID:   id,
			SiteID:   s.siteID,
			SiteName: "bench",
			TimeZone: "UTC",
			DataDir:  filepath.Join(dir, id),
			// Port 0 at first start; the bound addresses are recorded below
			// and reused on restart, as a real node's config would be.
			RaftAddr:     "127.0.0.1:0",
			APIAddr:      "127.0.0.1:0",
			ClusterToken: "bench-cluster-token",
			APIToken:     "bench-api-token",
		}
		if cuttable {
			if cfg.RaftAddr, err = fixedAddr(); err != nil {
				return nil, err
			}
			if cfg.APIAddr, err = fixedAddr(); err != nil {
				return nil, err
			}
			p, err := s.net.proxy(id, cfg.RaftAddr)
			if err != nil {
				return nil, err
			}
			cfg.RaftAdvertise = p.Addr()
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = s.nodes[0].URL()
		}
		nd := node.New(cfg, s.log)
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := nd.Open(octx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("open node %s: %w", cfg.NodeID, err)
		}
		if !cuttable {
			// The bound addresses (RaftAddr reads back the advertised one,
			// which is the proxy's for a cuttable site).
			cfg.RaftAddr = nd.Raft().RaftAddr()
			cfg.APIAddr = strings.TrimPrefix(nd.URL(), "http://")
		}
		s.cfgs = append(s.cfgs, cfg)
		s.nodes = append(s.nodes, nd)
	}
	err = waitUntil(ctx, 60*time.Second, "site formed", func() bool {
		for _, nd := range s.nodes {
			st := nd.Raft().Status()
			if st.LeaderID == "" || st.LeaderAPIAddr == "" || len(st.Members) != n {
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	s.logLvl.Set(lvl)
	return s, nil
}

// leader waits for a running node that leads and returns its index.
func (s *benchSite) leader(ctx context.Context) (int, error) {
	li := -1
	err := waitUntil(ctx, 30*time.Second, "a leader", func() bool {
		for i, nd := range s.nodes {
			if nd != nil && nd.Raft().Status().State == raftnode.StateLeader {
				li = i
				return true
			}
		}
		return false
	})
	return li, err
}

// follower returns the index of a running node other than the leader li.
func (s *benchSite) follower(li int) int {
	for i, nd := range s.nodes {
		if i != li && nd != nil {
			return i
		}
	}
	return -1
}

// crash takes node i down as a crash would. Its Raft connections are cut
// first (see raftNet), so that from this moment its peers hear nothing from
// it, and then it is closed without leaving (LeaveOnClose is false). Close
// alone is no crash: it hands leadership over. Close runs in the
// background, so that what the caller measures from the crash is not
// Close's own duration; the returned channel yields Close's error when the
// node is down and its files and addresses are free again. The site must
// have been started cuttable, and the node must have had connections open
// to every running peer (a leader does), or the crash is refused.
func (s *benchSite) crash(i int) (<-chan error, error) {
	id := s.cfgs[i].NodeID
	peers, err := s.net.Cut(id)
	if err != nil {
		return nil, err
	}
	for j, nd := range s.nodes {
		if j != i && nd != nil && !peers[s.cfgs[j].NodeID] {
			return nil, fmt.Errorf("crash %s: it had no Raft connection to %s to cut", id, s.cfgs[j].NodeID)
		}
	}
	nd := s.nodes[i]
	s.nodes[i] = nil
	done := make(chan error, 1)
	go func() { done <- nd.Close() }()
	return done, nil
}

// restart opens node i again from its data dir, on its old addresses,
// neither bootstrapping nor joining.
func (s *benchSite) restart(ctx context.Context, i int) error {
	cfg := s.cfgs[i]
	cfg.Bootstrap, cfg.Join = false, ""
	if s.net != nil {
		s.net.Heal(cfg.NodeID)
	}
	nd := node.New(cfg, s.log)
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := nd.Open(octx); err != nil {
		return fmt.Errorf("restart node %s: %w", cfg.NodeID, err)
	}
	s.nodes[i] = nd
	return nil
}

// close stops every running node, followers first, with their logs
// silenced: a site shutting down logs nothing worth reading here.
func (s *benchSite) close() {
	s.logLvl.Set(quiet)
	if s.net != nil {
		defer s.net.Close()
	}
	for _, leader := range []bool{false, true} {
		for i, nd := range s.nodes {
			if nd == nil || (nd.Raft().Status().State == raftnode.StateLeader) != leader {
				continue
			}
			_ = nd.Close()
			s.nodes[i] = nil
		}
	}
}

// benchData is what the write workloads refer to: a group with one door and
// a few people who receive grants to it.
type benchData struct {
	group  string
	people []string
}

// setupData creates a door, an access group for it and nPeople people
// through nd, in proposals of up to 1000 commands.
func setupData(ctx context.Context, nd *node.Node, siteID string, nPeople int) (benchData, error) {
	gen := access.NewIDGen(rand.Reader)
	newID := func() string {
		id, err := gen.New(time.Now())
		if err != nil {
			panic(err) // only for a clock before 1970 or after 10889
		}
		return string(id)
	}
	door, d := newID(), benchData{group: newID()}
	cmds := []*raftv1.Command{
		{Actor: "bench", Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: siteID, Name: "front"}}},
		{Actor: "bench", Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{
			Id: d.group, SiteId: siteID, Name: "staff", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}},
	}
	for i := range nPeople {
		p := newID()
		d.people = append(d.people, p)
		cmds = append(cmds, &raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{
			Id: p, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: fmt.Sprintf("person %d", i), Active: true}}})
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(cmds) > 0 {
		n := min(len(cmds), 1000)
		// The commands are puts under fixed IDs, so a retry after a lost
		// leadership (a busy machine can miss a heartbeat) changes nothing
		// twice.
		for attempt := 0; ; attempt++ {
			_, err := nd.Propose(ctx, cmds[:n]...)
			if err == nil {
				break
			}
			if attempt == 5 || ctx.Err() != nil {
				return d, fmt.Errorf("set up site data: %w", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
			}
		}
		cmds = cmds[n:]
	}
	return d, nil
}

// grantWriter makes the workload's command: a new live grant (a ULID of its
// own) of the group to the next of the people, with a request ID as a real
// client sends for idempotent retries. A live PutGrant is not fencing
// (sitestate.Fencing): it is acknowledged once committed. Not safe for
// concurrent use; give each client its own.
type grantWriter struct {
	gen  *access.IDGen
	data benchData
	next int
}

func newGrantWriter(d benchData, offset int) *grantWriter {
	return &grantWriter{gen: access.NewIDGen(rand.Reader), data: d, next: offset}
}

func (w *grantWriter) command() (*raftv1.Command, string) {
	id, err := w.gen.New(time.Now())
	if err != nil {
		panic(err) // only for a clock before 1970 or after 10889
	}
	holder := w.data.people[w.next%len(w.data.people)]
	w.next++
	return &raftv1.Command{Actor: "bench", RequestId: "bench-" + string(id),
		Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: string(id), HolderId: holder, GroupId: w.data.group}}}, string(id)
}

// waitUntil polls cond every millisecond until it holds, timeout passes or
// ctx ends.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// nodeLogger returns the logger the site's nodes write to: l, from lvl up.
// lvl starts at Warn (Debug when l logs Debug), so that Raft's and
// Badger's routine progress does not drown the benchmark's own; the
// benchmark raises it around what it breaks on purpose.
func nodeLogger(l *slog.Logger, lvl *slog.LevelVar) *slog.Logger {
	lvl.Set(slog.LevelWarn)
	if l.Enabled(context.Background(), slog.LevelDebug) {
		lvl.Set(slog.LevelDebug)
	}
	return slog.New(minLevel{h: l.Handler(), min: lvl})
}

// quiet is a log level above every record's.
const quiet = slog.LevelError + 100

// minLevel drops records below min.
type minLevel struct {
	h   slog.Handler
	min *slog.LevelVar
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min.Level() && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{h: m.h.WithGroup(g), min: m.min} }

// fixedAddr returns a loopback address with a port that is free right now
// and lies below the kernel's ephemeral port range, so that once a node
// using it stops, no outgoing connection's source port takes it before
// the node restarts on it (as with a real node's configured port). It
// falls back to a kernel-chosen port when the range cannot be read or
// leaves no room below it.
func fixedAddr() (string, error) {
	lo := 0
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
		}
	}
	const base = 10000
	if lo-base >= 1000 {
		for range 100 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+mrand.IntN(lo-base)))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// errTooManyFailures reports a workload whose calls failed in a healthy site.
var errTooManyFailures = errors.New("proposals failed")
