package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
)

// logsRequest builds the filters of `ctl logs` from the flags.
func (m *CtlPeopleMain) logsRequest() (*peoplev1.ListAccessLogsRequest, error) {
	req := &peoplev1.ListAccessLogsRequest{PersonId: m.Person, DoorId: m.Door, SiteId: m.Site}
	var err error
	if req.FromMs, err = parseMs("from", m.From); err != nil {
		return nil, err
	}
	if req.UntilMs, err = parseMs("until", m.Until); err != nil {
		return nil, err
	}
	switch m.Result {
	case "":
	case "granted":
		req.Result = peoplev1.AccessResult_ACCESS_RESULT_GRANTED
	case "denied":
		req.Result = peoplev1.AccessResult_ACCESS_RESULT_DENIED
	default:
		return nil, fmt.Errorf("%w: --result %q: want granted or denied", errUsage, m.Result)
	}
	if m.Limit < 0 {
		return nil, fmt.Errorf("%w: --limit %d: want 0 or more", errUsage, m.Limit)
	}
	return req, nil
}

// runLogs is `gatehouse ctl logs`: the access decisions of every site,
// newest first, as a table, JSON (--json: one ListAccessLogsResponse with
// every entry up to --limit) or CSV (--csv, streamed by ExportAccessLogs).
func (m *CtlPeopleMain) runLogs(ctx context.Context, c peoplev1connect.PeopleServiceClient) error {
	req, err := m.logsRequest()
	if err != nil {
		return err
	}
	if m.CSV {
		return m.exportLogs(ctx, c, req)
	}
	all := &peoplev1.ListAccessLogsResponse{}
	for len(all.Logs) < m.Limit {
		req.PageSize = int32(min(m.Limit-len(all.Logs), 1000))
		res, err := c.ListAccessLogs(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		all.Logs = append(all.Logs, res.Msg.GetLogs()...)
		all.SourceAvailable = res.Msg.GetSourceAvailable()
		all.NextPageToken = res.Msg.GetNextPageToken()
		if req.PageToken = all.NextPageToken; req.PageToken == "" {
			break
		}
	}
	if m.JSON {
		return m.printJSON(all)
	}
	tw := tabwriter.NewWriter(m.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSITE\tSEQ\tDOOR\tCARD\tPERSON\tRESULT\tREASON\tOFFLINE")
	for _, l := range all.Logs {
		result := "denied"
		if l.GetGranted() {
			result = "granted"
		}
		person := l.GetPersonName()
		if person == "" {
			person = l.GetPersonId()
		}
		offline := ""
		if l.GetOffline() {
			offline = "offline"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", time.UnixMilli(l.GetAtMs()).UTC().Format(time.RFC3339), l.GetSiteId(),
			l.GetSeq(), l.GetDoorId(), orDash(l.GetCardMasked()), orDash(person), result, orDash(l.GetReason()), offline)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if all.NextPageToken != "" {
		fmt.Fprintf(m.stderr, "(more entries: raise --limit, or use --csv)\n")
	}
	return nil
}

// exportLogs streams the CSV of the matching decisions to --out or stdout.
func (m *CtlPeopleMain) exportLogs(ctx context.Context, c peoplev1connect.PeopleServiceClient, req *peoplev1.ListAccessLogsRequest) error {
	var out io.Writer = m.stdout
	if m.Out != "" {
		f, err := os.Create(m.Out)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	limit := int32(0)
	if m.set["limit"] {
		limit = int32(min(m.Limit, 1_000_000))
	}
	stream, err := c.ExportAccessLogs(ctx, connect.NewRequest(&peoplev1.ExportAccessLogsRequest{Filter: req, Limit: limit}))
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
