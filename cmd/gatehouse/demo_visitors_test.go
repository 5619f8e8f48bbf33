package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
)

var (
	bannerKey  = regexp.MustCompile(`export GATEHOUSE_API_KEY=(\S+)`)
	bannerHost = regexp.MustCompile(`--host (\S+)`)
	tokenRe    = regexp.MustCompile(`GH1\.[A-Za-z0-9_.-]+`)
	cardRe     = regexp.MustCompile(`card +(\d+) \(encoded and dispensed`)
)

// demoPost posts form to the demo at base+path and returns the status and
// the body.
func demoPost(t *testing.T, base, path string, form url.Values) (int, string) {
	t.Helper()
	res, err := http.PostForm(strings.TrimSuffix(base, "/")+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// demoVisit follows one visit through the demo the way its banner tells a
// user: ctl visit invite, the token from the QR email at /mail, check-in
// at the demo's kiosk, taps (denied before the pick-up, granted after at a
// profile door, denied outside), ctl visit pickup, checkout. Bad requests
// to the demo's endpoints get clear errors.
func demoVisit(t *testing.T, base, banner string) {
	t.Helper()
	m, host := bannerKey.FindStringSubmatch(banner), bannerHost.FindStringSubmatch(banner)
	if m == nil || host == nil {
		t.Fatalf("the banner prints no API key export:\n%s", banner)
	}
	for _, want := range []string{"/demo/kiosk/checkin", "/demo/tap", "/demo/kiosk/checkout", "ctl visit invite", "--profile " + demoProfileID} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner does not mention %q", want)
		}
	}
	hub := strings.TrimSuffix(base, "/")

	// Bad requests: clear errors, nothing done.
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
		says   string
	}{
		{"/demo/kiosk/checkin", url.Values{}, 400, "token is required"},
		{"/demo/kiosk/checkin", url.Values{"token": {"GH1.not-a-token"}}, 422, "invitation_invalid"},
		{"/demo/tap", url.Values{"door": {"nowhere"}, "card": {"1"}}, 404, `no door "nowhere"`},
		{"/demo/tap", url.Values{"door": {"floor-1"}, "card": {"x"}}, 400, "card=N"},
		{"/demo/kiosk/checkout", url.Values{"visit": {"nope"}}, 400, "visit"},
		{"/demo/kiosk/checkout", url.Values{"token": {strings.Repeat("x", demoMaxForm)}}, 400, "too large"},
	} {
		if code, body := demoPost(t, base, tc.path, tc.form); code != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("POST %s %.40v: %d %q, want %d with %q", tc.path, tc.form, code, body, tc.status, tc.says)
		}
	}

	t.Setenv("GATEHOUSE_API_KEY", m[1])
	code, out, errs := run(t, "ctl", "visit", "invite", "--hub", hub, "--site", demoSiteID, "--host", host[1],
		"--type", demoTypeID, "--profile", demoProfileID, "--escort", "--guest", "Anna Example <anna@example.com>", "--json")
	if code != 0 {
		t.Fatalf("invite: exit %d\n%s\n%s", code, out, errs)
	}
	var invited visitv1.InviteResponse
	if err := protojson.Unmarshal([]byte(out), &invited); err != nil || len(invited.GetVisits()) != 1 {
		t.Fatalf("invite --json: %v\n%s", err, out)
	}
	visit := invited.GetVisits()[0].GetId()

	// The QR email at /mail; its text carries the token.
	var token string
	waitFor(t, "the invitation email at /mail", 20*time.Second, func() (bool, string) {
		for n := 1; n <= 5; n++ {
			res, err := http.Get(fmt.Sprintf("%s/mail/%d", hub, n))
			if err != nil {
				return false, err.Error()
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && strings.Contains(string(b), "to anna@example.com") {
				token = tokenRe.FindString(string(b))
				return token != "", "no token in the email"
			}
		}
		return false, "not caught yet"
	})

	// The kiosk: the invitation reaches the site by replication.
	var body string
	waitFor(t, "the guest checked in at the demo's kiosk", 30*time.Second, func() (bool, string) {
		var code int
		code, body = demoPost(t, base, "/demo/kiosk/checkin", url.Values{"token": {token}})
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
	cm := cardRe.FindStringSubmatch(body)
	if cm == nil || !strings.Contains(body, "checked_in") || !strings.Contains(body, visit) {
		t.Fatalf("check-in answer without the card or the visit:\n%s", body)
	}
	card := cm[1]
	tapAt := func(door string) string {
		t.Helper()
		code, body := demoPost(t, base, "/demo/tap", url.Values{"door": {door}, "card": {card}})
		if code != 200 {
			t.Fatalf("tap at %s: %d %s", door, code, body)
		}
		return body
	}
	if got := tapAt("floor-1"); !strings.Contains(got, "denied (escort_not_picked_up)") {
		t.Fatalf("before the pick-up: %s", got)
	}
	waitFor(t, "ctl visit pickup (once the check-in reached the hub)", 30*time.Second, func() (bool, string) {
		code, out, errs := run(t, "ctl", "visit", "pickup", visit, "--hub", hub)
		return code == 0, out + errs
	})
	waitFor(t, "granted at floor-1 once the pick-up reached the site", 30*time.Second, func() (bool, string) {
		got := tapAt("floor-1")
		return strings.Contains(got, "granted"), got
	})
	waitFor(t, "the host's arrival email at /mail", 20*time.Second, func() (bool, string) {
		res, err := http.Get(hub + "/mail")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return strings.Contains(string(b), "has arrived"), "not caught yet"
	})
	if got := tapAt("floor-2"); !strings.Contains(got, "denied") {
		t.Fatalf("outside the profile: %s", got)
	}
	if code, body := demoPost(t, base, "/demo/kiosk/checkout", url.Values{"visit": {visit}}); code != 200 || !strings.Contains(body, "checked_out") {
		t.Fatalf("checkout: %d %s", code, body)
	}
	if got := tapAt("floor-1"); !strings.Contains(got, "denied") {
		t.Fatalf("after checkout: %s", got)
	}
}
