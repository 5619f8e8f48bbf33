package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/people"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
)

// ctlPeopleNouns are the `gatehouse ctl` nouns CtlPeopleMain serves.
var ctlPeopleNouns = []string{"people", "groups", "cards", "import", "export", "logs"}

// CtlPeopleMain is `gatehouse ctl people|groups|cards|import|export|logs`:
// the hub's cardholder API (docs/cardholders.md) for scripts and security
// staff.
type CtlPeopleMain struct {
	env
	Hub     string
	APIKey  string
	JSON    bool
	Timeout time.Duration

	// filters (people list, export)
	Query, Site, Occupier, Group, State, Kind string
	PageSize                                  int
	All                                       bool
	// person fields (people create, update)
	Name, First, Last, Email  string
	Active, Offline           bool
	ValidFrom, ValidUntil     string
	Cards, Groups, Doors, IDs multiFlag
	IdemKey, Schedule         string
	// import
	Mapping, CardFormat, Delimiter string
	EnableAccess, RequireCard      bool
	RequireEmail                   bool
	// export, logs
	Out, Person, Door, From, Until string
	Limit                          int
	CSV                            bool
	Result                         string
	// cards capture
	Device string

	noun, verb string
	args       []string
	set        map[string]bool
}

const ctlPeopleUsage = `Usage:
  gatehouse ctl people list [--query TEXT] [--site ID] [--occupier ID] [--group ID] [--state active|inactive] [--kind K] [--all]
  gatehouse ctl people show|activate|deactivate|delete PERSON_ID
  gatehouse ctl people create --kind occupier|access_user (--name N | --first-name F --last-name L) [--email E] [--occupier ID] [--card SPEC]... [--group ID]... [--active] [--offline]
  gatehouse ctl people update PERSON_ID [--name N] [--email E] [--offline=true|false] [--valid-from T] [--valid-until T]
  gatehouse ctl cards assign|unassign PERSON_ID SPEC     (SPEC: 123, raw32:123, raw56:123, h10301:FAC:CARD, corp1000:FAC:CARD, h10304:FAC:CARD)
  gatehouse ctl cards unknown [--site ID]
  gatehouse ctl cards capture --site ID --door ID [--device ID] [--timeout 60s]   (prints the number of the next card tapped there)
  gatehouse ctl groups list [--site ID]
  gatehouse ctl groups create --site ID --name N --door ID [--door ID]... [--schedule ID]
  gatehouse ctl groups add|remove GROUP_ID PERSON_ID...
  gatehouse ctl import FILE.csv [--kind K] [--mapping M] [--enable-access] [--require-card] [--require-email]
  gatehouse ctl export [filters as for people list] [--out FILE]
  gatehouse ctl logs [--person ID] [--door-id ID] [--site ID] [--from T] [--until T] [--result granted|denied] [--limit N] [--csv [--out FILE]]

The API key (admin, security or occupier_admin) is read from --api-key.
Times are RFC 3339 or YYYY-MM-DD (UTC).

Flags:
`

// ParseFlags reads the noun (the first argument), the verb and the flags.
func (m *CtlPeopleMain) ParseFlags(noun string, args []string) error {
	m.noun = noun
	fs := flag.NewFlagSet("gatehouse ctl "+noun, flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Hub, "hub", "http://127.0.0.1:8080", "base URL of the hub")
	fs.StringVar(&m.APIKey, "api-key", "env:GATEHOUSE_API_KEY", "the hub API key: env:NAME, file:PATH or the key itself")
	fs.BoolVar(&m.JSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&m.Timeout, "timeout", 30*time.Second, "how long to wait for the hub (imports and exports: 10x; cards capture: for a tap, default 60s, at most 5m)")
	fs.StringVar(&m.Query, "query", "", "list, export: search text in name or email, or a card number (N or FAC:CARD)")
	fs.StringVar(&m.Site, "site", "", "list, export, logs, groups, cards unknown: only this site; cards capture: the reader's site")
	fs.StringVar(&m.Occupier, "occupier", "", "list, export: only this occupier; create, update: the person's occupier ID")
	fs.StringVar(&m.Group, "group", "", "list, export: only members of this group")
	fs.StringVar(&m.State, "state", "", "list, export: only active or inactive people")
	fs.StringVar(&m.Kind, "kind", "", "occupier or access_user (list, export: filter; create: required; import: kind of every row)")
	fs.IntVar(&m.PageSize, "page-size", 50, "list: people per page")
	fs.BoolVar(&m.All, "all", false, "list: every page, not only the first")
	fs.StringVar(&m.Name, "name", "", "create, update: full name; groups create: the group's name")
	fs.StringVar(&m.First, "first-name", "", "create, update: first name")
	fs.StringVar(&m.Last, "last-name", "", "create, update: last name")
	fs.StringVar(&m.Email, "email", "", "create, update: email address")
	fs.BoolVar(&m.Active, "active", false, "create: access active from the start")
	fs.BoolVar(&m.Offline, "offline", false, "create, update: offline access (pushed to door controllers' caches)")
	fs.StringVar(&m.ValidFrom, "valid-from", "", "create, update: start of the validity window (empty: none)")
	fs.StringVar(&m.ValidUntil, "valid-until", "", "create, update: end of the validity window, exclusive (empty: none)")
	fs.Var(&m.Cards, "card", "create: a card SPEC (see above); repeatable")
	fs.Var(&m.Groups, "group-id", "create: a group ID to grant; repeatable")
	fs.Var(&m.Doors, "door", "groups create: a door ID of the site, repeatable; cards capture: the reader's door")
	fs.StringVar(&m.Schedule, "schedule", "", "groups create: schedule ID (empty: always)")
	fs.StringVar(&m.IdemKey, "idempotency-key", "", "create, groups create, import: key making a retry safe")
	fs.StringVar(&m.Mapping, "mapping", "", "import: column mapping, e.g. first_name=Vorname,email=#3 (docs/csv-import.md)")
	fs.StringVar(&m.CardFormat, "card-format", "", "import: card format of rows without one (number, raw32, raw56, h10301, corp1000, h10304)")
	fs.StringVar(&m.Delimiter, "delimiter", "", "import: field delimiter (default ,)")
	fs.BoolVar(&m.EnableAccess, "enable-access", false, "import: create people active unless their row says otherwise")
	fs.BoolVar(&m.RequireCard, "require-card", false, "import: reject rows without a card")
	fs.BoolVar(&m.RequireEmail, "require-email", false, "import: reject rows without an email")
	fs.StringVar(&m.Out, "out", "", "export: write the CSV to this file instead of stdout")
	fs.StringVar(&m.Person, "person", "", "logs: only this person's")
	fs.StringVar(&m.Door, "door-id", "", "logs: only at this door")
	fs.StringVar(&m.From, "from", "", "logs: from this time")
	fs.StringVar(&m.Until, "until", "", "logs: until this time, exclusive")
	fs.IntVar(&m.Limit, "limit", 100, "logs, cards unknown: most entries (logs --csv: 0 for every one)")
	fs.BoolVar(&m.CSV, "csv", false, "logs: stream every matching entry as CSV (to --out FILE or stdout)")
	fs.StringVar(&m.Result, "result", "", "logs: only granted or only denied decisions")
	fs.StringVar(&m.Device, "device", "", "cards capture: only taps recorded by this device")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlPeopleUsage)
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	m.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m.set[f.Name] = true })
	want := map[string]map[string]int{ // noun → verb → arguments (-1: one or more)
		"people": {"list": 0, "show": 1, "activate": 1, "deactivate": 1, "delete": 1, "create": 0, "update": 1},
		"cards":  {"assign": 2, "unassign": 2, "unknown": 0, "capture": 0},
		"groups": {"list": 0, "create": 0, "add": -2, "remove": -2},
	}
	switch noun {
	case "import":
		if len(rest) != 1 {
			fs.Usage()
			return fmt.Errorf("%w: ctl import FILE.csv", errUsage)
		}
		m.args = rest
		return nil
	case "export", "logs":
		if len(rest) != 0 {
			return fmt.Errorf("%w: ctl %s takes no arguments", errUsage, noun)
		}
		return nil
	}
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: name a verb for ctl %s", errUsage, noun)
	}
	m.verb, m.args = rest[0], rest[1:]
	n, ok := want[noun][m.verb]
	switch {
	case !ok:
		fs.Usage()
		return fmt.Errorf("%w: unknown verb %q for ctl %s", errUsage, m.verb, noun)
	case n >= 0 && len(m.args) != n, n < 0 && len(m.args) < -n:
		return fmt.Errorf("%w: ctl %s %s takes %d argument(s)", errUsage, noun, m.verb, max(n, -n))
	}
	if noun == "cards" && m.verb == "capture" {
		if m.Site == "" || len(m.Doors) != 1 {
			return fmt.Errorf("%w: ctl cards capture needs --site ID and one --door ID", errUsage)
		}
		if t := m.captureTimeout(); t <= 0 || t > people.MaxCaptureTimeout || t%time.Millisecond != 0 {
			return fmt.Errorf("%w: --timeout must be a whole number of milliseconds up to %s", errUsage, people.MaxCaptureTimeout)
		}
	}
	return nil
}

// secret reads the API key: env:NAME, file:PATH, a file's path, or the key.
func secret(spec string) (string, error) {
	if strings.HasPrefix(spec, "env:") || strings.HasPrefix(spec, "file:") {
		return auth.ReadSecret(spec)
	}
	if _, err := os.Stat(spec); err == nil {
		return auth.ReadSecret("file:" + spec)
	}
	if len(spec) < auth.MinKeyLen {
		return "", fmt.Errorf("api key: shorter than %d bytes", auth.MinKeyLen)
	}
	return spec, nil
}

// Run calls the hub.
func (m *CtlPeopleMain) Run(ctx context.Context) error {
	key, err := secret(m.APIKey)
	if err != nil {
		return err
	}
	timeout := m.Timeout
	if m.noun == "import" || m.noun == "export" || m.set["all"] {
		timeout *= 10
	}
	if m.noun == "cards" && m.verb == "capture" {
		timeout = m.captureTimeout() + 30*time.Second // the hub answers at its own timeout first
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opt := connect.WithInterceptors(auth.Bearer(key))
	base := strings.TrimRight(m.Hub, "/")
	pc := peoplev1connect.NewPeopleServiceClient(http.DefaultClient, base, opt)
	gc := peoplev1connect.NewGroupServiceClient(http.DefaultClient, base, opt)
	switch m.noun {
	case "people":
		return m.runPeople(ctx, pc)
	case "cards":
		return m.runCards(ctx, pc)
	case "groups":
		return m.runGroups(ctx, gc)
	case "import":
		return m.runImport(ctx, pc)
	case "export":
		return m.runExport(ctx, pc)
	case "logs":
		return m.runLogs(ctx, pc)
	}
	return fmt.Errorf("%w: unknown noun %q", errUsage, m.noun)
}

// printJSON prints msg as JSON.
func (m *CtlPeopleMain) printJSON(msg proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.stdout, string(b))
	return err
}

func parseKind(s string) (peoplev1.PersonKind, error) {
	switch s {
	case "":
		return peoplev1.PersonKind_PERSON_KIND_UNSPECIFIED, nil
	case "occupier", "occupier_user":
		return peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER, nil
	case "access_user", "access":
		return peoplev1.PersonKind_PERSON_KIND_ACCESS_USER, nil
	}
	return 0, fmt.Errorf("%w: --kind %q: want occupier or access_user", errUsage, s)
}

func kindName(k peoplev1.PersonKind) string {
	switch k {
	case peoplev1.PersonKind_PERSON_KIND_OCCUPIER_USER:
		return "occupier"
	case peoplev1.PersonKind_PERSON_KIND_ACCESS_USER:
		return "access_user"
	}
	return "-"
}

// parseMs parses an RFC 3339 time or a date (UTC) to Unix ms; "" is 0.
func parseMs(flagName, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("%w: --%s %q: want RFC 3339 or YYYY-MM-DD", errUsage, flagName, v)
}

// parseCardSpec parses N, raw32:N, raw56:N, number:N or FORMAT:FAC:CARD.
func parseCardSpec(s string) (*peoplev1.CardSpec, error) {
	parts := strings.Split(s, ":")
	formats := map[string]peoplev1.CardFormat{"number": peoplev1.CardFormat_CARD_FORMAT_NUMBER, "raw32": peoplev1.CardFormat_CARD_FORMAT_RAW32,
		"raw56": peoplev1.CardFormat_CARD_FORMAT_RAW56, "h10301": peoplev1.CardFormat_CARD_FORMAT_H10301,
		"corp1000": peoplev1.CardFormat_CARD_FORMAT_CORP1000, "h10304": peoplev1.CardFormat_CARD_FORMAT_H10304}
	bad := fmt.Errorf("%w: card %q: want N, raw32:N, raw56:N or h10301|corp1000|h10304:FACILITY:CARD", errUsage, s)
	spec := &peoplev1.CardSpec{Format: peoplev1.CardFormat_CARD_FORMAT_NUMBER}
	numStr := parts[len(parts)-1]
	switch len(parts) {
	case 1:
	case 2, 3:
		f, ok := formats[strings.ToLower(parts[0])]
		wiegand := f >= peoplev1.CardFormat_CARD_FORMAT_H10301
		if !ok || wiegand != (len(parts) == 3) {
			return nil, bad
		}
		spec.Format = f
		if wiegand {
			fac, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				return nil, bad
			}
			spec.Facility = uint32(fac)
		}
	default:
		return nil, bad
	}
	n, err := strconv.ParseUint(numStr, 10, 64)
	if err != nil {
		return nil, bad
	}
	spec.Number = n
	return spec, nil
}

func (m *CtlPeopleMain) filter() (*peoplev1.PeopleFilter, error) {
	f := &peoplev1.PeopleFilter{Query: m.Query, SiteId: m.Site, OccupierId: m.Occupier, GroupId: m.Group}
	switch m.State {
	case "":
	case "active":
		f.State = peoplev1.PersonState_PERSON_STATE_ACTIVE
	case "inactive":
		f.State = peoplev1.PersonState_PERSON_STATE_INACTIVE
	default:
		return nil, fmt.Errorf("%w: --state %q: want active or inactive", errUsage, m.State)
	}
	var err error
	f.Kind, err = parseKind(m.Kind)
	return f, err
}

// printPeople prints people as a table.
func (m *CtlPeopleMain) printPeople(ps []*peoplev1.Person) error {
	tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tKIND\tEMAIL\tOCCUPIER\tACTIVE\tOFFLINE\tCARDS\tGROUPS")
	for _, p := range ps {
		var cards, groups []string
		for _, c := range p.GetCards() {
			s := c.GetFormat() + ":" + strconv.FormatUint(c.GetCard(), 10)
			if c.GetFacility() != 0 || strings.HasPrefix(c.GetFormat(), "h1") || c.GetFormat() == "corp1000" {
				s = fmt.Sprintf("%s:%d:%d", c.GetFormat(), c.GetFacility(), c.GetCard())
			}
			if c.GetStatus() != "active" {
				s += "(" + c.GetStatus() + ")"
			}
			cards = append(cards, s)
		}
		for _, g := range p.GetGroups() {
			groups = append(groups, g.GetName())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\t%s\t%s\n", p.GetId(), p.GetName(), kindName(p.GetKind()), orDash(p.GetEmail()),
			orDash(p.GetOccupierId()), p.GetActive(), p.GetOfflineAccess(), orDash(strings.Join(cards, " ")), orDash(strings.Join(groups, ", ")))
	}
	return tw.Flush()
}

func (m *CtlPeopleMain) printPerson(p *peoplev1.Person) error {
	if m.JSON {
		return m.printJSON(p)
	}
	return m.printPeople([]*peoplev1.Person{p})
}

func (m *CtlPeopleMain) runPeople(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	switch m.verb {
	case "list":
		f, err := m.filter()
		if err != nil {
			return err
		}
		all := &peoplev1.ListPeopleResponse{}
		tok := ""
		for {
			res, err := c.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: f, PageSize: int32(m.PageSize), PageToken: tok}))
			if err != nil {
				return err
			}
			all.People = append(all.People, res.Msg.GetPeople()...)
			all.TotalSize, all.NextPageToken = res.Msg.GetTotalSize(), res.Msg.GetNextPageToken()
			if tok = res.Msg.GetNextPageToken(); tok == "" || !m.All {
				break
			}
		}
		if m.JSON {
			return m.printJSON(all)
		}
		if err := m.printPeople(all.GetPeople()); err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "\n%d of %d\n", len(all.GetPeople()), all.GetTotalSize())
		return nil
	case "show":
		res, err := c.GetPerson(ctx, connect.NewRequest(&peoplev1.GetPersonRequest{PersonId: m.args[0]}))
		if err != nil {
			return err
		}
		return m.printPerson(res.Msg.GetPerson())
	case "activate", "deactivate":
		res, err := c.SetActive(ctx, connect.NewRequest(&peoplev1.SetActiveRequest{PersonId: m.args[0], Active: m.verb == "activate"}))
		if err != nil {
			return err
		}
		return m.printPerson(res.Msg.GetPerson())
	case "delete":
		res, err := c.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: m.args[0]}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		fmt.Fprintf(m.stdout, "deleted %s; cards freed: %s\n", m.args[0], orDash(strings.Join(res.Msg.GetFreedCardsMasked(), " ")))
		return nil
	case "create":
		kind, err := parseKind(m.Kind)
		if err != nil {
			return err
		}
		req := &peoplev1.CreatePersonRequest{IdempotencyKey: m.IdemKey, FirstName: m.First, LastName: m.Last, Name: m.Name, Email: m.Email,
			Kind: kind, OccupierId: m.Occupier, Active: m.Active, OfflineAccess: m.Offline, GroupIds: m.Groups}
		if req.ValidFromMs, err = parseMs("valid-from", m.ValidFrom); err != nil {
			return err
		}
		if req.ValidUntilMs, err = parseMs("valid-until", m.ValidUntil); err != nil {
			return err
		}
		for _, s := range m.Cards {
			spec, err := parseCardSpec(s)
			if err != nil {
				return err
			}
			req.Cards = append(req.Cards, spec)
		}
		res, err := c.CreatePerson(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return m.printPerson(res.Msg.GetPerson())
	case "update":
		req := &peoplev1.UpdatePersonRequest{PersonId: m.args[0]}
		str := func(name string, v string, to **string) {
			if m.set[name] {
				*to = &v
			}
		}
		str("first-name", m.First, &req.FirstName)
		str("last-name", m.Last, &req.LastName)
		str("name", m.Name, &req.Name)
		str("email", m.Email, &req.Email)
		str("occupier", m.Occupier, &req.OccupierId)
		if m.set["offline"] {
			req.OfflineAccess = &m.Offline
		}
		if m.set["kind"] {
			k, err := parseKind(m.Kind)
			if err != nil {
				return err
			}
			req.Kind = k
		}
		for _, t := range []struct {
			name, v string
			to      **int64
		}{{"valid-from", m.ValidFrom, &req.ValidFromMs}, {"valid-until", m.ValidUntil, &req.ValidUntilMs}} {
			if m.set[t.name] {
				ms, err := parseMs(t.name, t.v)
				if err != nil {
					return err
				}
				*t.to = &ms
			}
		}
		res, err := c.UpdatePerson(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return m.printPerson(res.Msg.GetPerson())
	}
	return fmt.Errorf("%w: unknown verb %q", errUsage, m.verb)
}

func (m *CtlPeopleMain) runCards(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	switch m.verb {
	case "assign", "unassign":
		spec, err := parseCardSpec(m.args[1])
		if err != nil {
			return err
		}
		var p *peoplev1.Person
		if m.verb == "assign" {
			res, err := c.AssignCard(ctx, connect.NewRequest(&peoplev1.AssignCardRequest{PersonId: m.args[0], Card: spec}))
			if err != nil {
				return err
			}
			p = res.Msg.GetPerson()
		} else {
			res, err := c.UnassignCard(ctx, connect.NewRequest(&peoplev1.UnassignCardRequest{PersonId: m.args[0], Card: spec}))
			if err != nil {
				return err
			}
			p = res.Msg.GetPerson()
		}
		return m.printPerson(p)
	case "unknown":
		res, err := c.ListUnknownCards(ctx, connect.NewRequest(&peoplev1.ListUnknownCardsRequest{SiteId: m.Site, Limit: int32(min(m.Limit, 500))}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LAST SEEN\tFIRST SEEN\tTAPS\tSITE\tDOOR\tCARD")
		for _, t := range res.Msg.GetTaps() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", time.UnixMilli(t.GetAtMs()).UTC().Format(time.RFC3339),
				time.UnixMilli(t.GetFirstSeenMs()).UTC().Format(time.RFC3339), t.GetCount(), t.GetSiteId(), t.GetDoorId(), t.GetNumber())
		}
		return tw.Flush()
	case "capture":
		return m.runCapture(ctx, c)
	}
	return fmt.Errorf("%w: unknown verb %q", errUsage, m.verb)
}

// captureTimeout is how long cards capture waits for a tap: --timeout when
// given, else people.DefaultCaptureTimeout.
func (m *CtlPeopleMain) captureTimeout() time.Duration {
	if m.set["timeout"] {
		return m.Timeout
	}
	return people.DefaultCaptureTimeout
}

// runCapture waits at the hub for the next card tapped at --door of --site
// and prints its number alone on stdout (the rest on stderr), or the whole
// answer with --json.
func (m *CtlPeopleMain) runCapture(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	timeout := m.captureTimeout()
	fmt.Fprintf(m.stderr, "tap a card at door %s of site %s (waiting up to %s)\n", m.Doors[0], m.Site, timeout)
	res, err := c.CaptureCard(ctx, connect.NewRequest(&peoplev1.CaptureCardRequest{SiteId: m.Site, DoorId: m.Doors[0],
		DeviceId: m.Device, TimeoutMs: timeout.Milliseconds()}))
	if err != nil {
		return err
	}
	r := res.Msg
	if m.JSON {
		return m.printJSON(r)
	}
	held := "held by nobody"
	switch {
	case r.GetPersonId() != "":
		held = fmt.Sprintf("held by %s (%s)", r.GetPersonName(), r.GetPersonId())
	case r.GetBound():
		held = "held by someone outside your scope"
	}
	format := r.GetFormat()
	if r.GetFormat() == "h10301" || r.GetFormat() == "corp1000" || r.GetFormat() == "h10304" {
		format = fmt.Sprintf("%s %d:%d", r.GetFormat(), r.GetFacility(), r.GetCard())
	}
	fmt.Fprintf(m.stderr, "card %s (%s) tapped at %s, %s\n", r.GetNumberMasked(), format,
		time.UnixMilli(r.GetAtMs()).UTC().Format(time.RFC3339), held)
	_, err = fmt.Fprintln(m.stdout, r.GetNumber())
	return err
}

func (m *CtlPeopleMain) runGroups(ctx context.Context, c peoplev1connect.GroupServiceClient) error {
	switch m.verb {
	case "list":
		res, err := c.ListGroups(ctx, connect.NewRequest(&peoplev1.ListGroupsRequest{SiteId: m.Site}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSITE\tNAME\tDOORS\tMEMBERS\tSCHEDULE")
		for _, g := range res.Msg.GetGroups() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", g.GetId(), g.GetSiteId(), g.GetName(), len(g.GetDoorIds()), g.GetMembers(), orDash(g.GetScheduleId()))
		}
		return tw.Flush()
	case "create":
		res, err := c.CreateGroup(ctx, connect.NewRequest(&peoplev1.CreateGroupRequest{IdempotencyKey: m.IdemKey, SiteId: m.Site, Name: m.Name,
			DoorIds: m.Doors, ScheduleId: m.Schedule}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		fmt.Fprintf(m.stdout, "group %s %q at site %s, %d doors\n", res.Msg.GetGroup().GetId(), res.Msg.GetGroup().GetName(), res.Msg.GetGroup().GetSiteId(), len(res.Msg.GetGroup().GetDoorIds()))
		return nil
	case "add":
		res, err := c.AddMembers(ctx, connect.NewRequest(&peoplev1.AddMembersRequest{GroupId: m.args[0], PersonIds: m.args[1:]}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		fmt.Fprintf(m.stdout, "%d grant(s) made\n", len(res.Msg.GetGrantIds()))
		return nil
	case "remove":
		res, err := c.RemoveMembers(ctx, connect.NewRequest(&peoplev1.RemoveMembersRequest{GroupId: m.args[0], PersonIds: m.args[1:]}))
		if err != nil {
			return err
		}
		if m.JSON {
			return m.printJSON(res.Msg)
		}
		fmt.Fprintf(m.stdout, "%d grant(s) removed\n", res.Msg.GetRemoved())
		return nil
	}
	return fmt.Errorf("%w: unknown verb %q", errUsage, m.verb)
}

// errImportRejected is returned (exit non-zero) for a file with bad rows.
var errImportRejected = fmt.Errorf("import rejected: nothing was imported")

func (m *CtlPeopleMain) runImport(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	data, err := os.ReadFile(m.args[0])
	if err != nil {
		return err
	}
	kind, err := parseKind(m.Kind)
	if err != nil {
		return err
	}
	stream, err := c.ImportPeople(ctx, connect.NewRequest(&peoplev1.ImportPeopleRequest{Csv: data, Kind: kind, Mapping: m.Mapping,
		EnableAccess: m.EnableAccess, RequireCard: m.RequireCard, RequireEmail: m.RequireEmail, CardFormat: m.CardFormat,
		Delimiter: m.Delimiter, IdempotencyKey: m.IdemKey}))
	if err != nil {
		return err
	}
	defer stream.Close()
	bar := progressLine{w: m.stderr}
	var res *peoplev1.ImportResult
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *peoplev1.ImportPeopleResponse_Progress:
			bar.draw(ev.Progress)
		case *peoplev1.ImportPeopleResponse_Result:
			res = ev.Result
		}
	}
	bar.done()
	if err := stream.Err(); err != nil {
		return err
	}
	if res == nil {
		return fmt.Errorf("import: the hub sent no result")
	}
	if m.JSON {
		if err := m.printJSON(res); err != nil {
			return err
		}
	} else if res.GetAccepted() {
		fmt.Fprintf(m.stdout, "imported %d people from %d rows\n", res.GetCreated(), res.GetRows())
	} else {
		tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LINE\tCOLUMN\tFIELD\tREASON\tMESSAGE")
		for _, e := range res.GetErrors() {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", e.GetLine(), e.GetColumn(), orDash(e.GetField()), e.GetReason(), e.GetMessage())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if res.GetDropped() > 0 {
			fmt.Fprintf(m.stdout, "… and %d more\n", res.GetDropped())
		}
	}
	if !res.GetAccepted() {
		return fmt.Errorf("%w: %d bad row(s) of %d", errImportRejected, len(res.GetErrors())+int(res.GetDropped()), res.GetRows())
	}
	return nil
}

// progressLine draws an import's progress on one terminal line.
type progressLine struct {
	w     io.Writer
	drawn bool
}

func (p *progressLine) draw(pr *peoplev1.ImportProgress) {
	const width = 30
	line := fmt.Sprintf("%-7s %8d rows", pr.GetPhase(), pr.GetRows())
	if pr.GetTotal() > 0 {
		done := min(width*int(pr.GetChecked())/int(pr.GetTotal()), width)
		line = fmt.Sprintf("%-7s [%s%s] %3d%% %8d rows", pr.GetPhase(), strings.Repeat("#", done), strings.Repeat(".", width-done),
			100*int(pr.GetChecked())/int(pr.GetTotal()), pr.GetRows())
	}
	if pr.GetErrors() > 0 {
		line += fmt.Sprintf(", %d bad", pr.GetErrors())
	}
	fmt.Fprintf(p.w, "\r%-70s", line)
	p.drawn = true
}

func (p *progressLine) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func (m *CtlPeopleMain) runExport(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	f, err := m.filter()
	if err != nil {
		return err
	}
	out := m.stdout
	if m.Out != "" {
		file, err := os.Create(m.Out)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}
	stream, err := c.ExportPeople(ctx, connect.NewRequest(&peoplev1.ExportPeopleRequest{Filter: f}))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		if _, err := out.Write(stream.Msg().GetChunk()); err != nil {
			return err
		}
	}
	return stream.Err()
}
