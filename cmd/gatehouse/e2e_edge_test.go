//go:build e2e

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// edgeProc is one `gatehouse edge` process.
type edgeProc struct {
	id, raft, api, dir string
	cmd                *exec.Cmd
	exited             chan error
}

func (p *edgeProc) url() string { return "http://" + p.api }

func startEdge(t *testing.T, bin string, p *edgeProc, extra ...string) {
	t.Helper()
	args := append([]string{"edge", "--node-id", p.id, "--site-id", "01JE2E0S1TE000000000000000", "--site-name", "E2E",
		"--data-dir", p.dir, "--raft-addr", p.raft, "--api", p.api, "--mqtt-listen", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GATEHOUSE_CLUSTER_TOKEN=cluster-e2e", "GATEHOUSE_API_TOKEN=api-e2e")
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan error, 1)
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
}

func status(p *edgeProc) (*statusv1.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := statusv1connect.NewStatusServiceClient(http.DefaultClient, p.url()).GetStatus(ctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
	if err != nil {
		return nil, err
	}
	for _, s := range res.Msg.GetSites() {
		for _, n := range s.GetNodes() {
			if n.GetId() == p.id {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("%s does not report itself", p.id)
}

func siteClient(p *edgeProc) edgev1connect.SiteServiceClient {
	return edgev1connect.NewSiteServiceClient(http.DefaultClient, p.url(), connect.WithInterceptors(
		connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer api-e2e")
				return next(ctx, req)
			}
		})))
}

// apply commits commands through any of the given nodes, retrying on
// errors (a node down, an election) with the same request IDs, so a retry
// of a command that did commit changes nothing.
func apply(t *testing.T, procs []*edgeProc, cmds ...*raftv1.Command) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		p := procs[i%len(procs)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := siteClient(p).Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: cmds}))
		cancel()
		if err == nil {
			for j, r := range res.Msg.GetResults() {
				if r.GetErrorCode() != "" {
					t.Fatalf("command %d: %s: %s", j, r.GetErrorCode(), r.GetError())
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2EEdgeKillLeader runs three `gatehouse edge` processes, kills the
// leader with SIGKILL while writes go on, checks that writes continue on
// the survivors and that the killed node, restarted from its files,
// catches up with every acknowledged write.
func TestE2EEdgeKillLeader(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	var procs []*edgeProc
	for i := range 3 {
		p := &edgeProc{id: fmt.Sprintf("e%d", i+1), raft: freePort(t), api: freePort(t), dir: filepath.Join(dir, fmt.Sprint(i))}
		if i == 0 {
			startEdge(t, bin, p, "--bootstrap")
		} else {
			startEdge(t, bin, p, "--join", procs[0].url())
		}
		procs = append(procs, p)
		waitFor(t, p.id+" serving", 30*time.Second, func() (bool, string) {
			st, err := status(p)
			if err != nil {
				return false, err.Error()
			}
			return st.GetHealthy(), st.String()
		})
	}
	gen := access.NewIDGen(rand.Reader)
	newID := func() string { id, _ := gen.New(time.Now()); return string(id) }
	door, group := newID(), newID()
	apply(t, procs,
		&raftv1.Command{RequestId: "door", Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: "01JE2E0S1TE000000000000000", Name: "front"}}},
		&raftv1.Command{RequestId: "group", Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: "01JE2E0S1TE000000000000000", Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}})
	addHolder := func(n int) {
		person := newID()
		apply(t, procs,
			&raftv1.Command{RequestId: fmt.Sprintf("p%d", n), Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
			&raftv1.Command{RequestId: fmt.Sprintf("c%d", n), Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: uint64(1000 + n), PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
			&raftv1.Command{RequestId: fmt.Sprintf("g%d", n), Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: newID(), HolderId: person, GroupId: group}}})
	}
	for n := range 20 {
		addHolder(n)
	}
	var leader *edgeProc
	var survivors []*edgeProc
	for _, p := range procs {
		if st, err := status(p); err == nil && st.GetRole() == "leader" {
			leader = p
		} else {
			survivors = append(survivors, p)
		}
	}
	if leader == nil || len(survivors) != 2 {
		t.Fatalf("leader %v, survivors %d", leader, len(survivors))
	}
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-leader.exited
	// Writes continue through the survivors once they elect a new leader.
	for n := 20; n < 40; n++ {
		addHolder(n)
	}
	check := func(p *edgeProc, card uint64) (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := siteClient(p).CheckAccess(ctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: card, DoorId: door}))
		if err != nil {
			return false, err.Error()
		}
		return res.Msg.GetGranted(), res.Msg.String()
	}
	for _, p := range survivors {
		waitFor(t, p.id+" grants card 1039", 20*time.Second, func() (bool, string) { return check(p, 1039) })
	}
	// The killed node restarts from its files (no bootstrap, no join) and
	// catches up with every write acknowledged while it was down.
	startEdge(t, bin, leader)
	waitFor(t, leader.id+" caught up", 30*time.Second, func() (bool, string) {
		for _, card := range []uint64{1000, 1019, 1039} {
			if ok, s := check(leader, card); !ok {
				return false, s
			}
		}
		return true, ""
	})
	ok, s := check(leader, 1040)
	if ok || !strings.Contains(s, "UNKNOWN_CARD") {
		t.Fatalf("restarted node on a never-issued card: %s", s)
	}
	// A clean shutdown (SIGTERM) of every node exits with status 0.
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case err := <-p.exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", p.id, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s still running 30 s after SIGTERM", p.id)
		}
	}
}

// TestE2EKill9Loop kills a single-node site with SIGKILL while a writer is
// committing, five times over, restarting it from its files each time, and
// checks that every write acknowledged before a kill is there afterwards
// (DESIGN.md §5: nothing acknowledged is lost; the state is rebuilt from the
// Raft log above the state machine's applied index).
func TestE2EKill9Loop(t *testing.T) {
	bin := binary(t)
	p := &edgeProc{id: "solo", raft: freePort(t), api: freePort(t), dir: t.TempDir()}
	gen := access.NewIDGen(rand.Reader)
	newID := func() string { id, _ := gen.New(time.Now()); return string(id) }
	door, group := newID(), newID()
	var acked []uint64
	card := uint64(5000)
	for round := range 5 {
		if round == 0 {
			startEdge(t, bin, p, "--bootstrap")
		} else {
			startEdge(t, bin, p)
		}
		waitFor(t, "solo serving", 30*time.Second, func() (bool, string) {
			st, err := status(p)
			if err != nil {
				return false, err.Error()
			}
			return st.GetHealthy(), st.String()
		})
		if round == 0 {
			apply(t, []*edgeProc{p},
				&raftv1.Command{RequestId: "door", Op: &raftv1.Command_PutDoor{PutDoor: &accessv1.Door{Id: door, SiteId: "01JE2E0S1TE000000000000000", Name: "front"}}},
				&raftv1.Command{RequestId: "group", Op: &raftv1.Command_PutGroup{PutGroup: &accessv1.Group{Id: group, SiteId: "01JE2E0S1TE000000000000000", Name: "all", DoorIds: []string{door}, Kind: accessv1.GroupKind_GROUP_KIND_ACCESS}}})
		}
		// Everything acknowledged so far survived the previous kill.
		for _, c := range acked {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := siteClient(p).CheckAccess(ctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: c, DoorId: door}))
			cancel()
			if err != nil || !res.Msg.GetGranted() {
				t.Fatalf("round %d: acknowledged card %d lost after kill -9: %v %v", round, c, res, err)
			}
		}
		// Write in the background and kill mid-stream.
		stop := make(chan struct{})
		writerDone := make(chan []uint64)
		go func(first uint64) {
			var ok []uint64
			client := siteClient(p)
			for c := first; ; c++ {
				select {
				case <-stop:
					writerDone <- ok
					return
				default:
				}
				person := newID()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				res, err := client.Apply(ctx, connect.NewRequest(&edgev1.ApplyRequest{Commands: []*raftv1.Command{
					{Op: &raftv1.Command_PutPerson{PutPerson: &accessv1.Person{Id: person, Kind: accessv1.PersonKind_PERSON_KIND_ACCESS_USER, Name: "P", Active: true}}},
					{Op: &raftv1.Command_PutCard{PutCard: &accessv1.Card{Number: c, PersonId: person, Status: accessv1.CardStatus_CARD_STATUS_ACTIVE}}},
					{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: newID(), HolderId: person, GroupId: group}}},
				}}))
				cancel()
				if err == nil && res.Msg.GetResults()[2].GetErrorCode() == "" {
					ok = append(ok, c)
				}
			}
		}(card)
		// Let some writes through, then kill without warning.
		waitFor(t, "writes in flight", 30*time.Second, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			res, err := siteClient(p).CheckAccess(ctx, connect.NewRequest(&edgev1.CheckAccessRequest{Card: card + 20, DoorId: door}))
			if err != nil {
				return false, err.Error()
			}
			return res.Msg.GetGranted(), res.Msg.String()
		})
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		close(stop)
		got := <-writerDone
		acked = append(acked, got...)
		card += 100000
	}
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged over five rounds; the test did not exercise much", len(acked))
	}
}
