package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

func init() {
	Default.Register(Bench{
		Name: "door",
		Help: "tap -> decision over MQTT at a 3-node site with 100k credentials, 500 taps/s from 50 readers, against the broker's bare publish->echo",
		Run:  runDoor,
	})
}

// doorParams sizes the door benchmark.
type doorParams struct {
	creds   int           // people, each with one card and one grant
	readers int           // reader devices, one per door, each its own MQTT client
	rate    float64       // taps per second, all readers together
	dur     time.Duration // length of the load
}

var (
	doorFull  = doorParams{creds: 100_000, readers: 50, rate: 500, dur: 10 * time.Second}
	doorQuick = doorParams{creds: 10_000, readers: 10, rate: 200, dur: 3 * time.Second}
	// doorTest, when set, replaces doorQuick (tests keep `make test` short).
	doorTest *doorParams
)

const (
	// doorTimeout is how long a tap may wait for its decision before it
	// counts as missing.
	doorTimeout = 2 * time.Second
	// doorUnknownShare is the share of taps with a card the site does not know.
	doorUnknownShare = 0.05
	// doorCardBase is the first loaded card number; loaded cards are
	// doorCardBase+i, unknown ones are drawn at doorUnknownBase and above.
	doorCardBase    = 1_000_000
	doorUnknownBase = 900_000_000
	// doorBatch is how many commands one proposal carries: raftnode's
	// maximum per call (DefaultMaxBatchCommands), a multiple of the three
	// commands of one credential.
	doorBatch = 999
	// doorNodes is the size of the site.
	doorNodes = 3
)

// runDoor measures the door decision: a reader publishes a tap (QoS 1) to
// an edge node's embedded broker and waits for the node's decision, with
// the site's state holding p.creds credentials. The load is open-loop:
// every reader taps on its own ticker whether or not its earlier taps have
// been answered, and each tap's latency runs from the publish call to the
// receipt of the decision with its request ID.
//
// The floor is the same broker (mochi-mqtt, the embedded broker's
// configuration) in the same process with an allow-all hook and an inline
// client that re-publishes every tap to the reader's decision topic, under
// the same clients, rate and schedule: what a tap would cost if deciding
// were free. It is measured first, before the site starts.
//
// All readers connect to the leader's embedded broker. The load generator,
// the three nodes and the broker share the machine's CPUs.
func runDoor(ctx context.Context, opt Options, emit func(Result)) error {
	p := doorFull
	if opt.Quick {
		p = doorQuick
		if doorTest != nil {
			p = *doorTest
		}
	}
	dir, cleanup, err := doorDir(opt.Dir)
	if err != nil {
		return err
	}
	defer cleanup()
	gen := access.NewIDGen(rand.Reader)
	siteID, err := gen.New(time.Now())
	if err != nil {
		return err
	}

	// The floor: the bare broker's publish -> echo round trip.
	opt.Log.Info("door: echo floor", "readers", p.readers, "rate", p.rate, "duration", p.dur)
	echo, err := doorEchoFloor(ctx, string(siteID), p, opt.Log)
	if err != nil {
		return fmt.Errorf("echo floor: %w", err)
	}
	if echo.missing > 0 {
		return fmt.Errorf("echo floor: %d of %d echoes missing", echo.missing, echo.sent)
	}
	echoP50, echoP99 := Micros(Percentile(echo.lat, 0.50)), Micros(Percentile(echo.lat, 0.99))
	emit(NewResult("door", "echo_p50_us", echoP50, "us", echoP50))
	emit(NewResult("door", "echo_p99_us", echoP99, "us", echoP99))

	// The site.
	lvl := new(slog.LevelVar)
	nodeLog := slog.New(doorLevelFilter{h: opt.Log.Handler(), min: lvl})
	lvl.Set(slog.LevelError + 100) // a forming site logs its elections as warnings
	start := time.Now()
	nodes, err := doorStartSite(ctx, dir, string(siteID), nodeLog)
	defer func() {
		lvl.Set(slog.LevelError + 100) // a site shutting down logs nothing worth reading here
		doorCloseSite(nodes)
	}()
	if err != nil {
		return err
	}
	lvl.Set(slog.LevelWarn)
	if opt.Log.Enabled(ctx, slog.LevelDebug) {
		lvl.Set(slog.LevelDebug)
	}
	li, err := doorLeader(ctx, nodes)
	if err != nil {
		return err
	}
	leader := nodes[li]
	opt.Log.Info("door: site formed", "took", time.Since(start).Round(time.Millisecond), "leader", leader.Raft().Status().NodeID)

	start = time.Now()
	data, err := doorLoadSite(ctx, leader, string(siteID), gen, p)
	if err != nil {
		return err
	}
	opt.Log.Info("door: credentials loaded", "credentials", p.creds, "readers", p.readers,
		"took", time.Since(start).Round(time.Millisecond))
	for _, nd := range nodes {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := nd.Raft().WaitApplied(wctx, data.lastIndex)
		cancel()
		if err != nil {
			return fmt.Errorf("wait for the credentials to apply: %w", err)
		}
	}
	if err := doorWait(ctx, 30*time.Second, "the leader's lease", func() bool { return leader.Raft().LeaseValid(time.Now()) }); err != nil {
		return err
	}

	// The load against the leader's embedded broker.
	readers, err := doorConnectReaders(leader.MQTTAddr(), string(siteID), data.readers, doorDecisionReply)
	defer doorDisconnect(readers)
	if err != nil {
		return err
	}
	if err := doorWarmUp(ctx, readers, data.cardBase); err != nil {
		return err
	}
	opt.Log.Info("door: load", "readers", p.readers, "rate", p.rate, "duration", p.dur, "broker", leader.MQTTAddr())
	// Garbage collections that end during the load are logged: with 100k
	// credentials the three nodes' heap takes seconds to mark, and a
	// collection overlapping the load shows in the tail (docs/edge.md,
	// "Door taps").
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcBefore := ms.NumGC
	run := doorRunLoad(ctx, readers, p, data.cardBase, data.creds)
	if err := ctx.Err(); err != nil {
		return err
	}
	runtime.ReadMemStats(&ms)
	opt.Log.Info("door: load done", "sent", run.sent, "answered", len(run.lat), "missing", run.missing,
		"wrong", run.wrong, "offline", run.offline, "publish_errors", run.pubErrs, "undecodable", run.decErrs,
		"send_lag_p99", Percentile(run.lag, 0.99), "send_lag_max", Percentile(run.lag, 1),
		"gc_cycles_ended", ms.NumGC-gcBefore, "heap_alloc_mb", ms.HeapAlloc>>20)

	emit(NewResult("door", "tap_p50_us", Micros(Percentile(run.lat, 0.50)), "us", echoP50))
	emit(NewResult("door", "tap_p99_us", Micros(Percentile(run.lat, 0.99)), "us", echoP99))
	emit(NewResult("door", "taps_per_s", run.rate, "taps/s", p.rate))
	emit(NewResult("door", "missing", float64(run.missing), "count", 0))
	emit(NewResult("door", "wrong", float64(run.wrong), "count", 0))

	// The heap the three nodes hold with the credentials loaded, measured
	// after the load (a forced collection, so it is what is live now and
	// not what the last cycle found): node state, Raft, Badger's memtables
	// and caches, the brokers and the readers (no floor).
	runtime.GC()
	runtime.ReadMemStats(&ms)
	opt.Log.Info("door: heap after the load", "heap_alloc_mb", ms.HeapAlloc>>20, "heap_sys_mb", ms.HeapSys>>20)
	emit(NewResult("door", "heap_live_mb", float64(ms.HeapAlloc)/(1<<20), "MiB", 0))
	return nil
}

// doorSiteData is what the load refers to.
type doorSiteData struct {
	readers   []doorReader // one per door
	cardBase  uint64       // loaded cards are cardBase .. cardBase+creds-1
	creds     int
	lastIndex uint64 // the log index of the last loading proposal
}

// doorReader is a commissioned reader device.
type doorReader struct {
	id     string
	door   access.ID
	secret string
}

// doorStartSite opens a site of doorNodes nodes under dir with the
// product's default Raft timings, each with its embedded broker on a
// loopback port. The first node bootstraps, the others join through it. It
// returns the nodes opened so far also with an error, for closing.
func doorStartSite(ctx context.Context, dir, siteID string, log *slog.Logger) ([]*node.Node, error) {
	var nodes []*node.Node
	for i := range doorNodes {
		id := fmt.Sprintf("door-node-%d", i+1)
		cfg := node.Config{
			NodeID: id, SiteID: siteID, SiteName: "door bench", TimeZone: "UTC",
			DataDir:  filepath.Join(dir, id),
			RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", MQTTListen: "127.0.0.1:0",
			ClusterToken: "door-bench-cluster-token", APIToken: "door-bench-api-token",
		}
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = nodes[0].URL()
		}
		nd := node.New(cfg, log)
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := nd.Open(octx)
		cancel()
		if err != nil {
			return nodes, fmt.Errorf("open node %s: %w", id, err)
		}
		nodes = append(nodes, nd)
	}
	err := doorWait(ctx, 60*time.Second, "the site to form", func() bool {
		for _, nd := range nodes {
			st := nd.Raft().Status()
			if st.LeaderID == "" || len(st.Members) != len(nodes) {
				return false
			}
		}
		return true
	})
	return nodes, err
}

// doorLeader waits for a node that leads and returns its index.
func doorLeader(ctx context.Context, nodes []*node.Node) (int, error) {
	li := -1
	err := doorWait(ctx, 30*time.Second, "a leader", func() bool {
		for i, nd := range nodes {
			if nd.Raft().Status().State == raftnode.StateLeader {
				li = i
				return true
			}
		}
		return false
	})
	return li, err
}

// doorCloseSite closes the followers, then the leader.
func doorCloseSite(nodes []*node.Node) {
	for _, leader := range []bool{false, true} {
		for _, nd := range nodes {
			if (nd.Raft().Status().State == raftnode.StateLeader) == leader {
				_ = nd.Close()
			}
		}
	}
}

// doorLoadSite writes the site's data through nd: p.readers doors, one
// access group with every door, p.creds people each with an active card
// and a grant of the group, and p.readers reader devices, one per door,
// each with its own secret. It proposes doorBatch commands per call.
func doorLoadSite(ctx context.Context, nd *node.Node, siteID string, gen *access.IDGen, p doorParams) (doorSiteData, error) {
	newID := func() string {
		id, err := gen.New(time.Now())
		if err != nil {
			panic(err) // only for a clock before 1970 or after 10889
		}
		return string(id)
	}
	d := doorSiteData{cardBase: doorCardBase, creds: p.creds}
	group := newID()
	var doors []string
	var cmds []*raftv1.Command
	for i := range p.readers {
		door := newID()
		doors = append(doors, door)
		cmds = append(cmds, &raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{
			Id: door, SiteId: siteID, Name: fmt.Sprintf("door %d", i+1)}}})
	}
	cmds = append(cmds, &raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{
		Id: group, SiteId: siteID, Name: "everyone", DoorIds: doors, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}})
	for i, door := range doors {
		r := doorReader{id: newID(), door: access.ID(door), secret: fmt.Sprintf("door-bench-reader-secret-%04d", i)}
		d.readers = append(d.readers, r)
		cmds = append(cmds, &raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{
			Id: r.id, SiteId: siteID, Kind: accessv1.DeviceKind_DEVICE_KIND_READER, Name: fmt.Sprintf("reader %d", i+1),
			DoorId: door, SecretHash: access.HashSecret([]byte(r.secret))}}})
	}
	// Every command is an upsert with its own IDs, so a batch whose
	// outcome is unknown (a leader change) is simply proposed again.
	propose := func() error {
		var err error
		for attempt := 1; attempt <= 5 && ctx.Err() == nil; attempt++ {
			if attempt > 1 {
				time.Sleep(200 * time.Millisecond)
			}
			octx, cancel := context.WithTimeout(ctx, 60*time.Second)
			var res []*edgev1.CommandResult
			res, err = nd.Propose(octx, cmds...)
			cancel()
			if err == nil {
				d.lastIndex = max(d.lastIndex, res[len(res)-1].GetIndex())
				cmds = cmds[:0]
				return nil
			}
		}
		return fmt.Errorf("load site data: %w", errors.Join(err, ctx.Err()))
	}
	if err := propose(); err != nil {
		return d, err
	}
	for i := range p.creds {
		person := newID()
		cmds = append(cmds,
			&raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{
				Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: fmt.Sprintf("person %d", i), Active: true}}},
			&raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{
				Number: doorCardBase + uint64(i), PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
			&raftv1.Command{Actor: "bench", Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{
				Id: newID(), HolderId: person, GroupId: group}}},
		)
		if len(cmds)+3 > doorBatch || i == p.creds-1 {
			if err := propose(); err != nil {
				return d, err
			}
		}
	}
	return d, nil
}

// doorDir makes a scratch directory for the benchmark under dir (the
// system temp dir when empty) and returns a function that removes it.
func doorDir(dir string) (string, func(), error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	d, err := os.MkdirTemp(dir, "door-*")
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

// doorWait polls cond every millisecond until it holds, timeout passes or
// ctx ends.
func doorWait(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
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

// doorLevelFilter drops records below min.
type doorLevelFilter struct {
	h   slog.Handler
	min *slog.LevelVar
}

func (f doorLevelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min.Level() && f.h.Enabled(ctx, l)
}
func (f doorLevelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f doorLevelFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return doorLevelFilter{h: f.h.WithAttrs(as), min: f.min}
}
func (f doorLevelFilter) WithGroup(g string) slog.Handler {
	return doorLevelFilter{h: f.h.WithGroup(g), min: f.min}
}
