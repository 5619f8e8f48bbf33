package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1/visitv1connect"
)

// CtlVisitMain is `gatehouse ctl visit VERB`: the hub's VisitService for
// scripts and hosts (docs/visitors.md).
//
//	gatehouse ctl visit invite --site ID --host ID --guest "Anna Müller <anna@example.com>" [--profile ID]... [--escort]
//	gatehouse ctl visit list [--site ID] [--host ID] [--state S,...] [--day YYYY-MM-DD] [--on-site]
//	gatehouse ctl visit show VISIT_ID
//	gatehouse ctl visit pickup VISIT_ID
//	gatehouse ctl visit checkout VISIT_ID
type CtlVisitMain struct {
	env
	Hub     string
	APIKey  string // a secret spec: env:NAME or file:PATH
	JSON    bool
	Timeout time.Duration

	Site, Host, Type, Key string
	From, Until           string
	Duration              time.Duration
	Escort                bool
	Guests, Profiles      multiFlag
	States, Day           string
	OnSite                bool

	verb string
	id   string
}

// multiFlag is a repeatable string flag; each use may hold a comma list
// (for profiles) or one guest.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const ctlVisitUsage = `Usage:
  gatehouse ctl visit invite --site ID --host ID --guest "Given Family <email>" [--guest ...] [flags]
  gatehouse ctl visit list [--site ID] [--host ID] [--state STATE,...] [--day YYYY-MM-DD] [--on-site]
  gatehouse ctl visit show VISIT_ID
  gatehouse ctl visit pickup VISIT_ID
  gatehouse ctl visit checkout VISIT_ID

The API key (role host, security or admin) is read from --api-key.

Flags:
`

// ParseFlags reads the verb, its argument and the flags.
func (m *CtlVisitMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("gatehouse ctl visit", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Hub, "hub", "http://127.0.0.1:8080", "base URL of the hub")
	fs.StringVar(&m.APIKey, "api-key", "env:GATEHOUSE_API_KEY", "the hub API key: env:NAME or file:PATH")
	fs.BoolVar(&m.JSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&m.Timeout, "timeout", 10*time.Second, "how long to wait for the hub")
	fs.StringVar(&m.Site, "site", "", "site ID (invite: the site visited; list: filter)")
	fs.StringVar(&m.Host, "host", "", "host's person ID (invite: the host; list: filter)")
	fs.StringVar(&m.Type, "type", "", "invite: visitor type ID whose rules apply")
	fs.StringVar(&m.From, "from", "", "invite: start of the visit, RFC 3339 (default: now)")
	fs.StringVar(&m.Until, "until", "", "invite: end of the visit, RFC 3339 (default: from + --duration)")
	fs.DurationVar(&m.Duration, "duration", 8*time.Hour, "invite: length of the visit when --until is not given")
	fs.BoolVar(&m.Escort, "escort", false, "invite: the guests must be picked up by the host")
	fs.Var(&m.Guests, "guest", `invite: a guest as "Given Family <email>" or "Family, Given <email>"; repeatable`)
	fs.Var(&m.Profiles, "profile", "invite: access profile (group ID) to give; repeatable or comma-separated")
	fs.StringVar(&m.Key, "idempotency-key", "", "invite: key making a retried invite safe (same key, same visits, no second email)")
	fs.StringVar(&m.States, "state", "", "list: only these states, comma-separated (e.g. invited,checked_in)")
	fs.StringVar(&m.Day, "day", "", "list: only visits overlapping this day, YYYY-MM-DD (UTC)")
	fs.BoolVar(&m.OnSite, "on-site", false, "list: only guests on site now, with time in")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlVisitUsage)
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: name a verb: invite, list, show, pickup or checkout", errUsage)
	}
	m.verb = rest[0]
	switch m.verb {
	case "invite", "list":
		if len(rest) != 1 {
			return fmt.Errorf("%w: ctl visit %s takes no arguments", errUsage, m.verb)
		}
	case "show", "pickup", "checkout":
		if len(rest) != 2 {
			return fmt.Errorf("%w: ctl visit %s VISIT_ID", errUsage, m.verb)
		}
		m.id = rest[1]
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown verb %q", errUsage, m.verb)
	}
	if m.verb == "invite" && (m.Site == "" || m.Host == "" || len(m.Guests) == 0) {
		return fmt.Errorf("%w: invite needs --site, --host and at least one --guest", errUsage)
	}
	return nil
}

// Run calls the hub.
func (m *CtlVisitMain) Run(ctx context.Context) error {
	key, err := auth.ReadSecret(m.APIKey)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	c := visitv1connect.NewVisitServiceClient(http.DefaultClient, strings.TrimRight(m.Hub, "/"), connect.WithInterceptors(auth.Bearer(key)))
	switch m.verb {
	case "invite":
		req, err := m.inviteRequest()
		if err != nil {
			return err
		}
		res, err := c.Invite(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return m.print(res.Msg, res.Msg.GetVisits())
	case "list":
		req := &visitv1.ListVisitsRequest{SiteId: m.Site, HostId: m.Host, Day: m.Day, OnSite: m.OnSite}
		for _, s := range splitList(m.States) {
			var st access.VisitState
			if err := st.UnmarshalText([]byte(s)); err != nil {
				return err
			}
			req.States = append(req.States, visitv1.VisitState(st))
		}
		res, err := c.ListVisits(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return m.print(res.Msg, res.Msg.GetVisits())
	case "show":
		res, err := c.GetVisit(ctx, connect.NewRequest(&visitv1.GetVisitRequest{VisitId: m.id}))
		if err != nil {
			return err
		}
		return m.print(res.Msg, []*visitv1.Visit{res.Msg.GetVisit()})
	case "pickup":
		res, err := c.ConfirmPickup(ctx, connect.NewRequest(&visitv1.ConfirmPickupRequest{VisitId: m.id}))
		if err != nil {
			return err
		}
		return m.print(res.Msg, []*visitv1.Visit{res.Msg.GetVisit()})
	case "checkout":
		res, err := c.CheckOut(ctx, connect.NewRequest(&visitv1.CheckOutRequest{VisitId: m.id}))
		if err != nil {
			return err
		}
		return m.print(res.Msg, []*visitv1.Visit{res.Msg.GetVisit()})
	}
	return nil
}

// inviteRequest builds the invitation from the flags.
func (m *CtlVisitMain) inviteRequest() (*visitv1.InviteRequest, error) {
	from := time.Now()
	if m.From != "" {
		t, err := time.Parse(time.RFC3339, m.From)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		from = t
	}
	until := from.Add(m.Duration)
	if m.Until != "" {
		t, err := time.Parse(time.RFC3339, m.Until)
		if err != nil {
			return nil, fmt.Errorf("--until: %w", err)
		}
		until = t
	}
	req := &visitv1.InviteRequest{SiteId: m.Site, HostId: m.Host, VisitorTypeId: m.Type, FromMs: from.UnixMilli(), UntilMs: until.UnixMilli(),
		Escort: m.Escort, IdempotencyKey: m.Key}
	for _, p := range m.Profiles {
		req.ProfileIds = append(req.ProfileIds, splitList(p)...)
	}
	for _, g := range m.Guests {
		name, addr, ok := strings.Cut(g, "<")
		a, err := mail.ParseAddress("<" + addr)
		if !ok || err != nil || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("--guest %q: want \"Given Family <email>\"", g)
		}
		given, family := access.SplitVisitorName(name)
		req.Guests = append(req.Guests, &visitv1.Guest{GivenName: given, FamilyName: family, Email: a.Address})
	}
	return req, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// print writes msg as JSON, or the visits as a table.
func (m *CtlVisitMain) print(msg proto.Message, visits []*visitv1.Visit) error {
	if m.JSON {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(m.stdout, string(b))
		return err
	}
	tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VISIT\tGUEST\tSTATE\tFROM\tUNTIL\tSITE\tHOST\tESCORT\tPROFILES\tIN")
	for _, v := range visits {
		state := strings.ToLower(strings.TrimPrefix(v.GetState().String(), "VISIT_STATE_"))
		if v.GetHeld() {
			state += " (held)"
		}
		in := "-"
		if v.GetCheckedInMs() != 0 {
			in = time.UnixMilli(v.GetCheckedInMs()).Format("15:04")
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\n", v.GetId(), v.GetGuest().GetGivenName(), v.GetGuest().GetFamilyName(), state,
			time.UnixMilli(v.GetFromMs()).Format("2006-01-02 15:04"), time.UnixMilli(v.GetUntilMs()).Format("15:04"),
			v.GetSiteId(), v.GetHostId(), v.GetEscort(), orDash(strings.Join(v.GetProfileIds(), ",")), in)
	}
	return tw.Flush()
}

// Close does nothing.
func (m *CtlVisitMain) Close() error { return nil }
