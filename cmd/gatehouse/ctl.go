package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

// CtlMain operates a running site and hub:
//
//	gatehouse ctl site status --node URL
//
// asks one node for the site's members, then asks every member for its
// own view, and prints leader, members, applied index and lag;
// "gatehouse ctl visit ..." is CtlVisitMain (ctl_visit.go).
type CtlMain struct {
	env
	Node    string
	JSON    bool
	Timeout time.Duration
	verb    []string
	visit   *CtlVisitMain  // set for "ctl visit ..."
	people  *CtlPeopleMain // set for "ctl people|groups|cards|import|export|logs ..."
	// revoc is set for "ctl revocations ...".
	revoc *CtlRevocationsMain
	// sync is set for "ctl sync ...".
	sync *CtlSyncMain
}

// ParseFlags reads the verb and flags.
func (m *CtlMain) ParseFlags(args []string) error {
	if len(args) > 0 && args[0] == "visit" {
		m.visit = &CtlVisitMain{env: m.env}
		return m.visit.ParseFlags(args[1:])
	}
	if len(args) > 0 && args[0] == "revocations" {
		m.revoc = &CtlRevocationsMain{env: m.env}
		return m.revoc.ParseFlags(args[1:])
	}
	if len(args) > 0 && args[0] == "sync" {
		m.sync = &CtlSyncMain{env: m.env}
		return m.sync.ParseFlags(args[1:])
	}
	if len(args) > 0 && slices.Contains(ctlPeopleNouns, args[0]) {
		m.people = &CtlPeopleMain{env: m.env}
		return m.people.ParseFlags(args[0], args[1:])
	}
	fs := flag.NewFlagSet("gatehouse ctl", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Node, "node", "http://127.0.0.1:7001", "base URL of any edge node's local API")
	fs.BoolVar(&m.JSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&m.Timeout, "timeout", 3*time.Second, "how long to wait for each node")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gatehouse ctl site status [flags]\n       gatehouse ctl visit invite|list|show|pickup|checkout [flags] (gatehouse ctl visit --help)\n       gatehouse ctl people|groups|cards|import|export|logs ... (gatehouse ctl people --help)\n       gatehouse ctl revocations pending [flags]\n       gatehouse ctl sync divergences [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	verb, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if strings.Join(verb, " ") != "site status" {
		fs.Usage()
		return fmt.Errorf("%w: unknown verb %q", errUsage, strings.Join(verb, " "))
	}
	m.verb = verb
	return nil
}

// memberView is one row of `ctl site status`.
type memberView struct {
	ID      string `json:"id"`
	API     string `json:"api"`
	Raft    string `json:"raft"`
	Role    string `json:"role"`
	Healthy bool   `json:"healthy"`
	Applied uint64 `json:"applied_index"`
	Lag     uint64 `json:"lag"`
	Detail  string `json:"detail,omitempty"`
}

// Run prints the site's status.
func (m *CtlMain) Run(ctx context.Context) error {
	if m.visit != nil {
		return m.visit.Run(ctx)
	}
	if m.people != nil {
		return m.people.Run(ctx)
	}
	if m.revoc != nil {
		return m.revoc.Run(ctx)
	}
	if m.sync != nil {
		return m.sync.Run(ctx)
	}
	get := func(base string) (*statusv1.GetStatusResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, m.Timeout)
		defer cancel()
		c := statusv1connect.NewStatusServiceClient(http.DefaultClient, base)
		res, err := c.GetStatus(ctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
	first, err := get(m.Node)
	if err != nil {
		return fmt.Errorf("ask %s: %w", m.Node, err)
	}
	if len(first.GetSites()) == 0 {
		return fmt.Errorf("%s is not an edge node (it reports no site)", m.Node)
	}
	site := first.GetSites()[0]
	var (
		rows   []memberView
		leader string
		commit uint64
	)
	for _, n := range site.GetNodes() {
		row := memberView{ID: n.GetId(), API: n.GetApiAddr(), Raft: n.GetRaftAddr(), Role: "unreachable"}
		if res, err := get(n.GetApiAddr()); err != nil {
			row.Detail = err.Error()
		} else {
			for _, s := range res.GetSites() {
				for _, self := range s.GetNodes() {
					if self.GetId() != n.GetId() {
						continue
					}
					row.Role, row.Healthy, row.Applied, row.Detail = self.GetRole(), self.GetHealthy(), self.GetAppliedIndex(), self.GetDetail()
					if row.Role == "leader" {
						leader, commit = self.GetId(), self.GetCommitIndex()
					}
				}
			}
		}
		rows = append(rows, row)
	}
	for i := range rows {
		if rows[i].Role != "unreachable" && commit > rows[i].Applied {
			rows[i].Lag = commit - rows[i].Applied
		}
	}
	if m.JSON {
		enc := json.NewEncoder(m.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"site": site.GetSiteId(), "leader": leader, "commit_index": commit, "members": rows})
	}
	fmt.Fprintf(m.stdout, "site %s (%s)  leader %s  commit %d\n\n", site.GetSiteId(), site.GetName(), orDash(leader), commit)
	tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tHEALTHY\tAPPLIED\tLAG\tAPI\tRAFT\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\t%s\t%s\n", r.ID, r.Role, r.Healthy, r.Applied, r.Lag, r.API, r.Raft, r.Detail)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Close does nothing.
func (m *CtlMain) Close() error { return nil }
