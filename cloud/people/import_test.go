package people_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// childEnv names the store directory of a hub run as a child process by
// the crash test (the test binary re-executing itself).
const childEnv = "GATEHOUSE_PEOPLE_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runChild serves the API over dir and prints its URL; it runs until killed.
func runChild(dir string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	e, _, err := serve(dir, ln, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	if err := seed(e.state); err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("URL", e.url)
	select {}
}

// syntheticFile returns importer.WriteSynthetic's file of n rows, with the
// card of data row dupOf copied onto data row dupAt when dupAt > 0.
func syntheticFile(tb testing.TB, n, dupAt, dupOf int) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := importer.WriteSynthetic(&b, n); err != nil {
		tb.Fatal(err)
	}
	if dupAt == 0 {
		return b.Bytes()
	}
	lines := strings.Split(b.String(), "\n")
	from, to := strings.Split(lines[dupOf+1], ","), strings.Split(lines[dupAt+1], ",")
	copy(to[4:7], from[4:7]) // card_format, card_facility, card_number
	lines[dupAt+1] = strings.Join(to, ",")
	return []byte(strings.Join(lines, "\n"))
}

// mustSyntheticGroups creates the groups the synthetic files name.
func mustSyntheticGroups(tb testing.TB, c clients) {
	for _, g := range importer.SyntheticGroups {
		c.mustGroup(tb, siteA, g, doorA1)
	}
}

// A 100,000-row file imports in one atomic write; the same file with one
// duplicate card at data row 73,412 imports nothing and its streamed
// report names that row's line. Then search, filters and pages at 100k.
func TestImport100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k rows")
	}
	const n = 100_000
	e := MustOpenEnv(t, nil)
	admin := e.as(keyAdmin)
	mustSyntheticGroups(t, admin)

	before := e.vector()
	start := time.Now()
	res, err := admin.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: syntheticFile(t, n, 73_412-1, 100), Kind: occupierUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rejected 100k-row import: %v", time.Since(start))
	if res.GetAccepted() || len(res.GetErrors()) != 1 {
		t.Fatalf("result %v", res)
	}
	// Data row 73,412 is on line 73,413 (the header is line 1); row 101 is
	// line 102.
	if got := res.GetErrors()[0]; got.GetLine() != 73_413 || got.GetReason() != "duplicate" || got.GetOtherLine() != 102 {
		t.Fatalf("report %v", got)
	}
	if !e.vector().Equal(before) {
		t.Fatal("a rejected import wrote something")
	}

	var phases []string
	start = time.Now()
	res, err = admin.importFile(ctx, &peoplev1.ImportPeopleRequest{Csv: syntheticFile(t, n, 0, 0), Kind: occupierUser, EnableAccess: true},
		func(p *peoplev1.ImportProgress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.GetPhase() {
				phases = append(phases, p.GetPhase())
				t.Logf("%v: phase %s", time.Since(start), p.GetPhase())
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted 100k-row import: %v", time.Since(start))
	if !res.GetAccepted() || res.GetCreated() != n {
		t.Fatalf("result %v", res)
	}
	if want := []string{"read", "lookup", "build", "done", "commit"}; !slices.Equal(phases, want) {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	// One write: the hub's normal lane moved by exactly the import's
	// deltas (a person, a card and two grants per row).
	moved := uint64(0)
	for src, seq := range e.vector() {
		moved += seq - before[src]
	}
	grants := len(e.state.Grants())
	if want := uint64(2*n + grants); moved != want || grants < n {
		t.Fatalf("the import made %d deltas, want %d (%d grants)", moved, want, grants)
	}

	var lat []time.Duration
	query := func(f *peoplev1.PeopleFilter, tok string) *peoplev1.ListPeopleResponse {
		t.Helper()
		start := time.Now()
		r, err := admin.people.ListPeople(ctx, connect.NewRequest(&peoplev1.ListPeopleRequest{Filter: f, PageSize: 50, PageToken: tok}))
		lat = append(lat, time.Since(start))
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg
	}
	if got := query(nil, "").GetTotalSize(); got != n {
		t.Fatalf("%d people, want %d", got, n)
	}
	if got := query(&peoplev1.PeopleFilter{Query: "person73411@"}, "").GetPeople(); len(got) != 1 {
		t.Fatalf("search by email: %d", len(got))
	}
	format, num, fac := importer.SyntheticCard(5000)
	_ = format
	if got := query(&peoplev1.PeopleFilter{Query: fac + ":" + num}, "").GetPeople(); len(got) != 1 || !strings.Contains(got[0].GetEmail(), "person5000@") {
		t.Fatalf("search by card %s:%s: %v", fac, num, got)
	}
	if got := query(&peoplev1.PeopleFilter{OccupierId: string(tid(200)), Query: "smith"}, "").GetTotalSize(); int(got) != n/len(importer.SyntheticOccupiers) {
		t.Fatalf("filter by occupier: %d", got)
	}
	var seen []string
	tok := ""
	for range 3 {
		r := query(&peoplev1.PeopleFilter{SiteId: string(siteA)}, tok)
		seen = append(seen, ids(r.GetPeople())...)
		tok = r.GetNextPageToken()
	}
	if len(seen) != 150 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 150 {
		t.Fatalf("three pages: %d people, distinct %d", len(seen), len(slices.Compact(slices.Sorted(slices.Values(seen)))))
	}
	slices.Sort(lat)
	t.Logf("ListPeople at 100k: %d queries, p50 %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])

	// Single changes at 100k people.
	start = time.Now()
	p := admin.mustCreate(t, &peoplev1.CreatePersonRequest{Name: "One More", Kind: accessUser, Cards: []*peoplev1.CardSpec{{Number: 5}}})
	t.Logf("CreatePerson at 100k: %v", time.Since(start))
	start = time.Now()
	if _, err := admin.people.DeletePerson(ctx, connect.NewRequest(&peoplev1.DeletePersonRequest{PersonId: p.GetId()})); err != nil {
		t.Fatal(err)
	}
	t.Logf("DeletePerson at 100k: %v", time.Since(start))
	start = time.Now()
	if got := query(&peoplev1.PeopleFilter{Query: "one more"}, "").GetTotalSize(); got != 0 {
		t.Fatalf("the deleted person is still listed")
	}
	t.Logf("ListPeople right after a change at 100k: %v", time.Since(start))
}

// A hub killed (SIGKILL) in the middle of an import leaves nothing of it
// half written: killed while the file is checked, nothing is there; killed
// while committing, either nothing or all of it.
func TestImportKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process")
	}
	const n = 100_000
	for _, tc := range []struct {
		name   string
		killAt string // the progress phase at which the child is killed
	}{
		{"WhileReading", "read"},
		{"WhileCommitting", "commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+dir)
			cmd.Stderr = tWriter{t}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			url, ok := strings.CutPrefix(strings.TrimSpace(line), "URL ")
			if err != nil || !ok {
				t.Fatalf("child said %q: %v", line, err)
			}
			e := &env{url: url}
			admin := e.as(keyAdmin)
			mustSyntheticGroups(t, admin)
			file := syntheticFile(t, n, 0, 0)

			ictx, cancel := context.WithCancel(ctx)
			defer cancel()
			killed := false
			_, err = admin.importFile(ictx, &peoplev1.ImportPeopleRequest{Csv: file, Kind: occupierUser}, func(p *peoplev1.ImportProgress) {
				if p.GetPhase() == tc.killAt && !killed {
					killed = true
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Error(err)
					}
				}
			})
			if !killed || err == nil {
				t.Fatalf("import ended (%v) without the child being killed at %q", err, tc.killAt)
			}
			_ = cmd.Wait()

			st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: hubstate.Kinds})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			state, err := hubstate.Open(ctx, st, hubstate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer state.Close()
			people, cards, grants := len(state.People()), len(state.Cards()), len(state.Grants())
			t.Logf("after the kill at %q: %d people, %d cards, %d grants", tc.killAt, people, cards, grants)
			switch {
			case people == 0 && cards == 0 && grants == 0:
			case tc.killAt == "commit" && people == n && cards == n && grants >= n:
			default:
				t.Fatalf("half written: %d people, %d cards, %d grants", people, cards, grants)
			}
			if tc.killAt == "read" && people != 0 {
				t.Fatalf("killed while reading, yet %d people", people)
			}
		})
	}
}
