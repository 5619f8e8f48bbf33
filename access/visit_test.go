package access_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

func TestVisitState_Order(t *testing.T) {
	order := []access.VisitState{
		access.VisitRequested, access.VisitInvited, access.VisitPreRegistered, access.VisitCheckedIn,
		access.VisitPickedUp, access.VisitCheckedOut, access.VisitExpired, access.VisitCancelled, access.VisitDenied,
	}
	for i := 1; i < len(order); i++ {
		if !(order[i-1] < order[i]) {
			t.Errorf("%v is not before %v", order[i-1], order[i])
		}
	}
	for _, s := range order {
		if got, want := s.Final(), s >= access.VisitCheckedOut; got != want {
			t.Errorf("%v.Final() = %v, want %v", s, got, want)
		}
	}
	if got, want := access.VisitPickedUp.String(), "picked_up"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestVisit_Advance(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	base := access.Visit{ID: idA, SiteID: idB, HostID: idC, VisitorID: idD, From: t0, Until: t0.Add(8 * time.Hour)}
	tests := []struct {
		name     string
		from, to access.VisitState
		want     access.VisitState
		wantCode access.Code
	}{
		{"OK/Forward", access.VisitInvited, access.VisitCheckedIn, access.VisitCheckedIn, ""},
		{"OK/Same", access.VisitCheckedIn, access.VisitCheckedIn, access.VisitCheckedIn, ""},
		{"OK/FinalToLaterFinal", access.VisitCheckedOut, access.VisitDenied, access.VisitDenied, ""},
		{"ErrVisitBackwards", access.VisitCheckedOut, access.VisitCheckedIn, access.VisitCheckedOut, access.Conflict},
		{"ErrUnknownState", access.VisitInvited, 42, access.VisitInvited, access.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := base
			v.State = tt.from
			got, err := v.Advance(tt.to)
			if gotCode := access.ErrorCode(err); gotCode != tt.wantCode {
				t.Fatalf("ErrorCode = %q, want %q (err %v)", gotCode, tt.wantCode, err)
			}
			if tt.wantCode == access.Conflict && !errors.Is(err, access.ErrVisitBackwards) {
				t.Errorf("err = %v, want ErrVisitBackwards", err)
			}
			if got.State != tt.want {
				t.Errorf("state = %v, want %v", got.State, tt.want)
			}
		})
	}
}

func TestVisit_Validate(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	ok := access.Visit{ID: idA, SiteID: idB, HostID: idC, VisitorID: idD, From: t0, Until: t0.Add(time.Hour), State: access.VisitInvited}
	with := func(f func(*access.Visit)) access.Visit { v := ok; f(&v); return v }
	runValidate(t, []validateCase{
		{"OK", ok, ""},
		{"ErrHostRequired", with(func(v *access.Visit) { v.HostID = "" }), "host id is required"},
		{"ErrWindowRequired", with(func(v *access.Visit) { v.Until = time.Time{} }), "from and until are required"},
		{"ErrWindowOrder", with(func(v *access.Visit) { v.Until = t0 }), "not after from"},
		{"ErrUnknownState", with(func(v *access.Visit) { v.State = 0 }), "unknown state"},
	})
}

func TestVisitorType_Check(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	lobby, lab, vault := idA, idB, idC
	contractor := access.VisitorType{
		ID: idD, Name: "Contractor", AllowedGroups: []access.ID{lobby, lab},
		RequiredDocuments: []string{"nda"}, MaxDuration: 10 * time.Hour, EscortRequired: true,
	}
	visit := access.Visit{ID: "01KDVDNA000000000000000009", TypeID: idD, From: t0, Until: t0.Add(8 * time.Hour), Escort: true}
	with := func(f func(*access.Visit)) access.Visit { v := visit; f(&v); return v }
	tests := []struct {
		name     string
		v        access.Visit
		groups   []access.ID
		wantErr  error
		wantCode access.Code
	}{
		{"OK", visit, []access.ID{lobby, lab}, nil, ""},
		{"OK/NoProfiles", visit, nil, nil, ""},
		{"OK/ExactlyMaxDuration", with(func(v *access.Visit) { v.Until = t0.Add(10 * time.Hour) }), nil, nil, ""},
		{"ErrProfileNotAllowed", visit, []access.ID{lobby, vault}, access.ErrProfileNotAllowed, access.Denied},
		{"ErrVisitTooLong", with(func(v *access.Visit) { v.Until = t0.Add(11 * time.Hour) }), nil, access.ErrVisitTooLong, access.Invalid},
		{"ErrEscortRequired", with(func(v *access.Visit) { v.Escort = false }), nil, access.ErrEscortRequired, access.Invalid},
		{"ErrOtherType", with(func(v *access.Visit) { v.TypeID = idA }), nil, nil, access.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := contractor.Check(tt.v, tt.groups)
			if got := access.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("ErrorCode = %q, want %q (err %v)", got, tt.wantCode, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if err := contractor.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}
