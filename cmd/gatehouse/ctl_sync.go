package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	consolev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1"
)

// CtlSyncMain is `gatehouse ctl sync divergences`: the sources whose
// deltas the hub's digest exchanges found to differ between the hub and a
// site (ConsoleService.ListDivergences, docs/replication.md §11), for an
// operator who must decide what to do about them.
type CtlSyncMain struct {
	env
	Hub     string
	APIKey  string
	Site    string
	JSON    bool
	Timeout time.Duration
}

const ctlSyncUsage = `Usage:
  gatehouse ctl sync divergences [--site ID] [--json]

Lists, per site the hub knows, the sources (origin/lane) from whose first
differing sequence number the hub and the site hold different deltas, as
found by the hub's digest exchanges since the hub process started. Nothing
is repaired automatically: see docs/replication.md §11. The API key
(admin or security) is read from --api-key.

Flags:
`

// ParseFlags reads the verb and flags.
func (m *CtlSyncMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("gatehouse ctl sync", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Hub, "hub", "http://127.0.0.1:8080", "base URL of the hub")
	fs.StringVar(&m.APIKey, "api-key", "env:GATEHOUSE_API_KEY", "the hub API key: env:NAME, file:PATH or the key itself")
	fs.StringVar(&m.Site, "site", "", "only this site (empty: every site the hub knows)")
	fs.BoolVar(&m.JSON, "json", false, "print the API's JSON answer instead of a table")
	fs.DurationVar(&m.Timeout, "timeout", 30*time.Second, "how long to wait for the hub")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlSyncUsage)
		fs.PrintDefaults()
	}
	verb, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if strings.Join(verb, " ") != "divergences" {
		fs.Usage()
		return fmt.Errorf("%w: unknown verb %q for ctl sync", errUsage, strings.Join(verb, " "))
	}
	return nil
}

// Run asks the hub and prints the answer.
func (m *CtlSyncMain) Run(ctx context.Context) error {
	key, err := secret(m.APIKey)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	res, err := consoleClient(m.Hub, key).ListDivergences(ctx, connect.NewRequest(&consolev1.ListDivergencesRequest{SiteId: m.Site}))
	if err != nil {
		return err
	}
	if m.JSON {
		return printConsoleJSON(m.stdout, res.Msg)
	}
	return printDivergences(m, res.Msg)
}

// printDivergences prints one line per site and a table of its
// divergences.
func printDivergences(m *CtlSyncMain, res *consolev1.ListDivergencesResponse) error {
	for _, s := range res.GetSites() {
		link := "disconnected"
		if s.GetConnected() {
			link = "connected"
		}
		name := ""
		if s.GetSiteName() != "" {
			name = " (" + s.GetSiteName() + ")"
		}
		fmt.Fprintf(m.stdout, "site %s%s  %s  %d divergent\n", s.GetSiteId(), name, link, len(s.GetDivergences()))
		if len(s.GetDivergences()) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tFIRST DIFFERING SEQ")
		for _, d := range s.GetDivergences() {
			fmt.Fprintf(tw, "  %s\t%d\n", d.GetSource(), d.GetSeq())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing.
func (m *CtlSyncMain) Close() error { return nil }
