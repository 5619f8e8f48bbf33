package scenario

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// kioskBase declares a kiosk and two dispensers (lines 1-3).
const kioskBase = `kiosk lobby-kiosk broker 2
dispenser lobby-disp stack 20
dispenser spare
`

const td3 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<< L898902C36UTO7408122F1204159ZE184226B<<<<<10"

func TestParseKiosks(t *testing.T) {
	src := kioskBase + `
at 0s  expect kiosk lobby-kiosk online within 5s
       expect dispenser lobby-disp state online stack ok no-faults
       scan qr GH1.eyJ2IjoxfQ.c2ln at kiosk lobby-kiosk
       expect kiosk lobby-kiosk shows try_again within 2s
       scan document "` + td3 + `" at kiosk lobby-kiosk
       scan document for "Anna Maria Eriksson" born 1974-08-12 expires 2031-04-15 at kiosk lobby-kiosk
       scan document for Doe born 1980-01-31 expires -24h number X1 id-card at kiosk lobby-kiosk
       checkin at kiosk lobby-kiosk
       checkout at kiosk lobby-kiosk
       checkout card 1234567 at kiosk lobby-kiosk
       fault kiosk lobby-kiosk qr_scanner
       fault kiosk lobby-kiosk clear
       fault dispenser lobby-disp jam
       expect dispenser lobby-disp state jam card-held
       fault dispenser lobby-disp clear
       return card 1234567 at dispenser lobby-disp
       expect dispenser lobby-disp captured 1234567 within 3s
       expect dispenser lobby-disp dispensed
       expect dispenser spare encoded 42 within 1s
       expect dispenser spare state offline stack empty within 1s
`
	s, err := Parse("kiosk.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Kiosks) != 1 || s.Kiosks[0].Broker != 2 || len(s.Dispensers) != 2 || s.Dispensers[0].Stack != 20 || s.Dispensers[1].Stack != 0 {
		t.Fatalf("kiosks %+v, dispensers %+v %+v", s.Kiosks[0], s.Dispensers[0], s.Dispensers[1])
	}
	want := []struct {
		kind StepKind
		ok   func(st *Step) bool
	}{
		{StepExpectState, func(st *Step) bool {
			return st.Kiosk == "lobby-kiosk" && st.State == "online" && st.Within == 5*time.Second
		}},
		{StepExpectState, func(st *Step) bool { return st.Dispenser == "lobby-disp" && st.State == "online stack ok no-faults" }},
		{StepScanQR, func(st *Step) bool { return st.Token == "GH1.eyJ2IjoxfQ.c2ln" && st.Kiosk == "lobby-kiosk" }},
		{StepExpectShows, func(st *Step) bool { return st.Event == "try_again" && st.Within == 2*time.Second }},
		{StepScanDocument, func(st *Step) bool { return st.Doc == nil && slices.Equal(st.MRZ, strings.Fields(td3)) }},
		{StepScanDocument, func(st *Step) bool {
			return st.Doc != nil && st.Doc.Name == "Anna Maria Eriksson" && st.Doc.Born.Equal(time.Date(1974, 8, 12, 0, 0, 0, 0, time.UTC)) &&
				st.Doc.Expires.Abs.Equal(time.Date(2031, 4, 15, 0, 0, 0, 0, time.UTC)) && st.Doc.Number == "" && !st.Doc.IDCard
		}},
		{StepScanDocument, func(st *Step) bool {
			return st.Doc.Name == "Doe" && st.Doc.Expires.Rel == -24*time.Hour && st.Doc.Number == "X1" && st.Doc.IDCard
		}},
		{StepCheckIn, func(st *Step) bool { return st.Kiosk == "lobby-kiosk" }},
		{StepCheckOut, func(st *Step) bool { return st.Card == 0 }},
		{StepCheckOut, func(st *Step) bool { return st.Card == 1234567 }},
		{StepFault, func(st *Step) bool { return st.Kiosk == "lobby-kiosk" && st.Fault == "qr_scanner" }},
		{StepFault, func(st *Step) bool { return st.Fault == "clear" }},
		{StepFault, func(st *Step) bool { return st.Dispenser == "lobby-disp" && st.Fault == "jam" }},
		{StepExpectState, func(st *Step) bool { return st.State == "jam card-held" }},
		{StepFault, func(st *Step) bool { return st.Fault == "clear" && st.Dispenser == "lobby-disp" }},
		{StepReturnCard, func(st *Step) bool { return st.Card == 1234567 && st.Dispenser == "lobby-disp" }},
		{StepExpectDispenser, func(st *Step) bool { return st.Event == "captured" && st.Card == 1234567 && st.Within == 3*time.Second }},
		{StepExpectDispenser, func(st *Step) bool { return st.Event == "dispensed" && st.Card == 0 }},
		{StepExpectDispenser, func(st *Step) bool { return st.Event == "encoded" && st.Card == 42 && st.Dispenser == "spare" }},
		{StepExpectState, func(st *Step) bool { return st.State == "offline stack empty" && st.Within == time.Second }},
	}
	if len(s.Steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(s.Steps), len(want))
	}
	for i, w := range want {
		if st := s.Steps[i]; st.Kind != w.kind || !w.ok(st) || st.Line != 5+i {
			t.Errorf("step %d (line %d): %+v", i+1, st.Line, st)
		}
	}
	for i, want := range map[int]string{
		2: `scan qr "GH1.eyJ2IjoxfQ.c2ln" at kiosk lobby-kiosk`,
		5: `scan document for "Anna Maria Eriksson" born 1974-08-12 expires 2031-04-15 at kiosk lobby-kiosk`,
		6: `scan document for "Doe" born 1980-01-31 expires -24h number X1 id-card at kiosk lobby-kiosk`,
		1: `expect dispenser lobby-disp state online stack ok no-faults`,
	} {
		if got := s.Steps[i].Action(); got != want {
			t.Errorf("action %d = %q, want %q", i, got, want)
		}
	}
	if got, want := s.Checks(), 8; got != want {
		t.Errorf("Checks() = %d, want %d", got, want)
	}
	checkRoundTrip(t, s)
}

func TestParseKioskErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"ErrKioskTwice", "kiosk k\nkiosk k\n", 2, `duplicate kiosk "k" (first declared on line 1)`},
		{"ErrKioskOption", "kiosk k door d\n", 1, `unexpected "door"`},
		{"ErrDispenserTwice", "dispenser d\ndispenser d\n", 2, `duplicate dispenser "d"`},
		{"ErrStackZero", "dispenser d stack 0\n", 1, `bad stack size "0": want 1 to 10000 cards`},
		{"ErrStackBig", "dispenser d stack 10001\n", 1, `bad stack size "10001"`},
		{"ErrDispenserOption", "dispenser d capacity 3\n", 1, `unknown dispenser option "capacity" (want stack or broker)`},
		{"ErrStackTwice", "dispenser d stack 1 stack 2\n", 1, `"stack" given twice`},
		{"ErrKioskKeyword", "kiosk scan\n", 1, `"scan" is a keyword and cannot be a kiosk name`},
		{"ErrUnknownKiosk", kioskBase + "scan qr x at kiosk nope\n", 4, `unknown kiosk "nope" (declare it with "kiosk nope")`},
		{"ErrUnknownDispenser", kioskBase + "fault dispenser nope jam\n", 4, `unknown dispenser "nope"`},
		{"ErrScanWhat", kioskBase + "scan face at kiosk lobby-kiosk\n", 4, `want "scan qr TOKEN" or "scan document ...", found "face"`},
		{"ErrScanNoKiosk", kioskBase + "scan qr x\n", 4, `missing "at" at the end of the line`},
		{"ErrScanAtWhat", kioskBase + "scan qr x at door d\n", 4, `want "kiosk", found "door"`},
		{"ErrQuoteOpen", kioskBase + "scan qr \"a b at kiosk lobby-kiosk\n", 4, `QR token: missing closing double quote`},
		{"ErrQuoteEmpty", kioskBase + "scan qr \"\" at kiosk lobby-kiosk\n", 4, `empty QR token`},
		{"ErrQuoteInside", kioskBase + "scan qr a\"b at kiosk lobby-kiosk\n", 4, `contains a double quote`},
		{"ErrTokenLong", kioskBase + "scan qr " + strings.Repeat("x", 2049) + " at kiosk lobby-kiosk\n", 4, `QR token of 2049 bytes`},
		{"ErrMRZShape", kioskBase + "scan document \"ABC DEF\" at kiosk lobby-kiosk\n", 4, `2 lines of 3 characters is not a machine-readable zone`},
		{"ErrMRZLine", kioskBase + "scan document \"" + strings.Repeat("<", 44) + " " + strings.Repeat("<", 43) + "\" at kiosk lobby-kiosk\n", 4, `MRZ line 2 has 43 characters, want 44`},
		{"ErrMRZChar", kioskBase + "scan document \"" + strings.Repeat("<", 43) + "a " + strings.Repeat("<", 44) + "\" at kiosk lobby-kiosk\n", 4, `MRZ line 1: character 44 'a' is not one of A-Z 0-9 <`},
		{"ErrDocNoFor", kioskBase + "scan document of anna at kiosk lobby-kiosk\n", 4, `want "for", found "of"`},
		{"ErrDocBorn", kioskBase + "scan document for anna born yesterday expires 2030-01-01 at kiosk lobby-kiosk\n", 4, `bad born date "yesterday": want YYYY-MM-DD`},
		{"ErrDocBornOffset", kioskBase + "scan document for anna born -24h expires 2030-01-01 at kiosk lobby-kiosk\n", 4, `bad born date "-24h"`},
		{"ErrDocExpires", kioskBase + "scan document for anna born 1990-01-01 expires soon at kiosk lobby-kiosk\n", 4, `bad expires date "soon": want YYYY-MM-DD, or an offset`},
		{"ErrDocDate", kioskBase + "scan document for anna born 1990-02-30 expires 2030-01-01 at kiosk lobby-kiosk\n", 4, `bad born date "1990-02-30"`},
		{"ErrDocNumber", kioskBase + "scan document for anna born 1990-01-01 expires 2030-01-01 number ab-12 at kiosk lobby-kiosk\n", 4, `bad document number "ab-12"`},
		{"ErrDocNoLetter", kioskBase + "scan document for \"12 34\" born 1990-01-01 expires 2030-01-01 at kiosk lobby-kiosk\n", 4, `name "12 34" has no letter`},
		{"ErrCheckinCard", kioskBase + "checkin card 1 at kiosk lobby-kiosk\n", 4, `want "at", found "card"`},
		{"ErrCheckoutCard", kioskBase + "checkout card 01 at kiosk lobby-kiosk\n", 4, `bad card number "01"`},
		{"ErrFaultWhat", kioskBase + "fault reader r jam\n", 4, `want "fault kiosk NAME FAULT" or "fault dispenser NAME jam|empty|clear", found "reader"`},
		{"ErrKioskFault", kioskBase + "fault kiosk lobby-kiosk jam\n", 4, `unknown kiosk fault "jam" (want one of id_scanner, qr_scanner, printer, screen, clear)`},
		{"ErrDispenserFault", kioskBase + "fault dispenser lobby-disp fire\n", 4, `unknown dispenser fault "fire" (want one of jam, empty, clear)`},
		{"ErrReturn", kioskBase + "return 1234 at dispenser lobby-disp\n", 4, `want "card", found "1234"`},
		{"ErrExpectKiosk", kioskBase + "expect kiosk lobby-kiosk happy\n", 4, `want "expect kiosk lobby-kiosk online", "offline" or "shows CODE", found "happy"`},
		{"ErrShowsCode", kioskBase + "expect kiosk lobby-kiosk shows Checked-In\n", 4, `bad result code "Checked-In"`},
		{"ErrExpectDispenser", kioskBase + "expect dispenser lobby-disp printed\n", 4, `want "expect dispenser lobby-disp dispensed [CARD]", "encoded CARD"`},
		{"ErrEncodedNoCard", kioskBase + "expect dispenser lobby-disp encoded\n", 4, `missing card number at the end of the line`},
		{"ErrDispensedCard", kioskBase + "expect dispenser lobby-disp dispensed x\n", 4, `bad card number "x"`},
		{"ErrStateNone", kioskBase + "expect dispenser lobby-disp state\n", 4, `"state" needs conditions`},
		{"ErrStateWord", kioskBase + "expect dispenser lobby-disp state broken\n", 4, `unknown dispenser condition "broken"`},
		{"ErrStateLevel", kioskBase + "expect dispenser lobby-disp state stack full\n", 4, `unknown stack level "full" (want one of ok, low, empty)`},
		{"ErrStateTwice", kioskBase + "expect dispenser lobby-disp state jam jam\n", 4, `"jam" given twice`},
		{"ErrStateContradiction", kioskBase + "expect dispenser lobby-disp state online offline\n", 4, `online and offline contradict each other`},
		{"ErrSetupAfter", kioskBase + "checkin at kiosk lobby-kiosk\nkiosk k2\n", 5, `setup (kiosk) must come before the first step`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.scn", []byte(tc.src))
			var es Errors
			if !errors.As(err, &es) || s != nil {
				t.Fatalf("Parse = %v, %v; want errors", s, err)
			}
			if es[0].Line != tc.line || !strings.Contains(es[0].Msg, tc.want) {
				t.Fatalf("first error %q at line %d; want %q at line %d\nall: %v", es[0].Msg, es[0].Line, tc.want, tc.line, err)
			}
		})
	}
}
