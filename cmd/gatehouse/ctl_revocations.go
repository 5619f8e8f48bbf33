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

// CtlRevocationsMain is `gatehouse ctl revocations pending`: the
// revocations the hub holds that a site has not reported applied yet
// (ConsoleService.ListPendingRevocations, docs/sync.md "Pending
// revocations"), for security staff watching a WAN cut.
type CtlRevocationsMain struct {
	env
	Hub     string
	APIKey  string
	Site    string
	Limit   int
	JSON    bool
	Timeout time.Duration
}

const ctlRevocationsUsage = `Usage:
  gatehouse ctl revocations pending [--site ID] [--limit N] [--json]

Lists, per site the hub replicates with, the revocations (grants removed,
people disabled or deleted, cards suspended or lost, visits checked out or
cancelled...) that concern the site and that it has not reported applied.
The API key (admin or security) is read from --api-key.

Flags:
`

// ParseFlags reads the verb and flags.
func (m *CtlRevocationsMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("gatehouse ctl revocations", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Hub, "hub", "http://127.0.0.1:8080", "base URL of the hub")
	fs.StringVar(&m.APIKey, "api-key", "env:GATEHOUSE_API_KEY", "the hub API key: env:NAME, file:PATH or the key itself")
	fs.StringVar(&m.Site, "site", "", "only this site (empty: every site the hub replicates with)")
	fs.IntVar(&m.Limit, "limit", 100, "most revocations listed per site, oldest first (at most 1000)")
	fs.BoolVar(&m.JSON, "json", false, "print the API's JSON answer instead of a table")
	fs.DurationVar(&m.Timeout, "timeout", 30*time.Second, "how long to wait for the hub")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlRevocationsUsage)
		fs.PrintDefaults()
	}
	verb, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if strings.Join(verb, " ") != "pending" {
		fs.Usage()
		return fmt.Errorf("%w: unknown verb %q for ctl revocations", errUsage, strings.Join(verb, " "))
	}
	if m.Limit < 1 || m.Limit > 1000 {
		return fmt.Errorf("%w: --limit must be in 1..1000", errUsage)
	}
	return nil
}

// Run asks the hub and prints the answer.
func (m *CtlRevocationsMain) Run(ctx context.Context) error {
	key, err := secret(m.APIKey)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	res, err := consoleClient(m.Hub, key).ListPendingRevocations(ctx, connect.NewRequest(&consolev1.ListPendingRevocationsRequest{
		SiteId: m.Site, Limit: int32(m.Limit)}))
	if err != nil {
		return err
	}
	if m.JSON {
		return printConsoleJSON(m.stdout, res.Msg)
	}
	for i, s := range res.Msg.GetSites() {
		if i > 0 {
			fmt.Fprintln(m.stdout)
		}
		link := "disconnected"
		if s.GetConnected() {
			link = "connected"
		}
		name := ""
		if s.GetSiteName() != "" {
			name = " (" + s.GetSiteName() + ")"
		}
		ack := "never acknowledged"
		if ms := s.GetLastAckMs(); ms > 0 {
			ack = "last ack " + time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(m.stdout, "site %s%s  %s  %s  %d pending\n", s.GetSiteId(), name, link, ack, s.GetPendingCount())
		if len(s.GetRevocations()) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MADE\tPENDING\tWHAT\tENTITY\tPERSON\tCARD\tGROUP\tVISIT\tFROM")
		for _, r := range s.GetRevocations() {
			person := r.GetPersonName()
			if person == "" {
				person = r.GetPersonId()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s/%s/%d\n",
				time.UnixMilli(r.GetMadeMs()).UTC().Format("2006-01-02 15:04:05"),
				(time.Duration(r.GetPendingMs()) * time.Millisecond).Round(time.Second), r.GetWhat(), r.GetKind(), r.GetEntityId(),
				orDash(person), orDash(r.GetCardMasked()), orDash(r.GetGroupName()), orDash(r.GetVisitId()),
				r.GetOrigin(), r.GetLane(), r.GetSeq())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if n := int(s.GetPendingCount()) - len(s.GetRevocations()); n > 0 {
			fmt.Fprintf(m.stdout, "... and %d more (--limit)\n", n)
		}
	}
	return nil
}

// Close does nothing.
func (m *CtlRevocationsMain) Close() error { return nil }
