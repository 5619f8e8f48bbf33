package access

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func testIDs(t *testing.T, n int) []ID {
	t.Helper()
	g := NewIDGen(rand.NewChaCha8([32]byte{9}))
	ids := make([]ID, n)
	for i := range ids {
		id, err := g.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

func TestCheckInvite(t *testing.T) {
	ids := testIDs(t, 4)
	lobby, lab, roof := ids[0], ids[1], ids[2]
	contractor := VisitorType{ID: ids[3], Name: "contractor", AllowedGroups: []ID{lobby, lab}, MaxDuration: 8 * time.Hour, EscortRequired: true}
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	ok := Invite{Type: contractor, From: from, Until: from.Add(8 * time.Hour), Escort: true, Profiles: []ID{lobby, lab}}
	if err := CheckInvite(ok); err != nil {
		t.Fatalf("a valid invite: %v", err)
	}
	for _, tc := range []struct {
		name string
		mut  func(*Invite)
		code Code
		says []string
	}{
		{"profile not allowed", func(in *Invite) { in.Profiles = append(in.Profiles, roof) }, Denied, []string{"profile " + string(roof)}},
		{"too long", func(in *Invite) { in.Until = in.From.Add(9 * time.Hour) }, Denied, []string{"longer than 8h0m0s"}},
		{"not escorted", func(in *Invite) { in.Escort = false }, Denied, []string{"must be escorted"}},
		{"everything at once", func(in *Invite) {
			in.Escort, in.Until, in.Profiles = false, in.From.Add(10*time.Hour), []ID{roof}
		}, Denied, []string{"profile", "longer", "escorted"}},
		{"empty window", func(in *Invite) { in.Until = in.From }, Invalid, []string{"window"}},
		{"malformed profile", func(in *Invite) { in.Profiles = []ID{"x"} }, Invalid, []string{"profile"}},
		{"repeated profile", func(in *Invite) { in.Profiles = []ID{lobby, lobby} }, Invalid, []string{"twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			in.Profiles = append([]ID(nil), ok.Profiles...)
			tc.mut(&in)
			err := CheckInvite(in)
			if ErrorCode(err) != tc.code {
				t.Fatalf("CheckInvite = %v, want code %s", err, tc.code)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%v does not say %q", err, s)
				}
			}
		})
	}
}

func TestMissingDocuments(t *testing.T) {
	vt := VisitorType{RequiredDocuments: []string{"NDA", "Safety induction", "Insurance"}}
	got := MissingDocuments(vt, []string{" nda ", "INSURANCE", "cv"})
	if len(got) != 1 || got[0] != "Safety induction" {
		t.Errorf("missing %v", got)
	}
	if got := MissingDocuments(VisitorType{}, nil); got != nil {
		t.Errorf("no requirement, missing %v", got)
	}
}

func TestCheckWatchlist(t *testing.T) {
	ids := testIDs(t, 4)
	dob := time.Date(1974, 8, 12, 0, 0, 0, 0, time.UTC)
	list := []WatchEntry{
		{ID: ids[0], GivenNames: "Anna", Surname: "Eriksson", BirthDate: dob, Action: WatchHold, Reason: "former contractor"},
		{ID: ids[1], GivenNames: "Jürgen", Surname: "Müller", Action: WatchDeny, Reason: "banned"},
		{ID: ids[2], GivenNames: "Someone", Surname: "Else", DocumentNumber: "L898902C3", Action: WatchDeny, Reason: "stolen document"},
	}
	for _, e := range list {
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		s       WatchSubject
		want    []ID
		certain bool
	}{
		{"invite by name only: likely", WatchSubject{GivenNames: "Anna", Surname: "Ericsson"}, []ID{ids[0]}, false},
		{"same name, other birth date", WatchSubject{GivenNames: "Anna", Surname: "Eriksson", BirthDate: dob.AddDate(1, 0, 0)}, nil, false},
		{"document at check-in: certain", WatchSubject{GivenNames: "ANNA MARIA", Surname: "ERIKSSON", BirthDate: dob, DocumentNumber: "X1"}, []ID{ids[0]}, true},
		{"transliterated", WatchSubject{GivenNames: "JUERGEN", Surname: "MUELLER"}, []ID{ids[1]}, false},
		{"umlaut dropped", WatchSubject{GivenNames: "Jurgen", Surname: "Muller"}, []ID{ids[1]}, false},
		{"stolen document under any name", WatchSubject{GivenNames: "Anna", Surname: "Eriksson", DocumentNumber: "l898902c3"}, []ID{ids[2], ids[0]}, true},
		{"nobody", WatchSubject{GivenNames: "Grace", Surname: "Hopper"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := CheckWatchlist(list, tc.s)
			if len(hits) != len(tc.want) {
				t.Fatalf("hits %v, want %v", hits, tc.want)
			}
			for i, h := range hits {
				if h.Entry.ID != tc.want[i] {
					t.Errorf("hit %d is %s, want %s (strongest action first)", i, h.Entry.ID, tc.want[i])
				}
			}
			if len(hits) > 0 && hits[0].Certain != tc.certain {
				t.Errorf("certain = %v, want %v", hits[0].Certain, tc.certain)
			}
		})
	}
	bad := WatchEntry{ID: ids[3], Surname: "  ", Action: WatchDeny}
	if err := bad.Validate(); ErrorCode(err) != Invalid {
		t.Errorf("entry without surname: %v", err)
	}
}
