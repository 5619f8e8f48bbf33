package visits_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzGuestToken feeds arbitrary tokens to the guest pages: each gets a
// page (never a server error), only the real token opens one, and none
// changes the replica.
func FuzzGuestToken(f *testing.F) {
	c := MustStartCatcher(f, "127.0.0.1:0")
	h := MustOpenHub(f, f.TempDir(), c.Addr())
	seedBuilding(f, h)
	mustInvite(f, h, inviteReq("", nil, false, time.Hour, guest("Fuzzy", "Guest")))
	_, token, _ := strings.Cut(checkinLink(f, mailTo(f, c, "fuzzy@example.test")), "/guest/")
	f.Add(token)
	f.Add(token[:len(token)-2] + "AA")
	f.Add("GH1." + token[4:len(token)/2])
	f.Add("")
	f.Add("GH1.")
	before := h.State().Vector()
	pages := h.Visits().GuestHandler()
	f.Fuzz(func(t *testing.T, tok string) {
		for _, path := range []string{"/guest/" + url.PathEscape(tok), "/guest/" + url.PathEscape(tok) + "/pickup"} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req := httptest.NewRequest(method, path, strings.NewReader("form_token=x&family=Evil&nda=accept"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				rec := httptest.NewRecorder()
				pages.ServeHTTP(rec, req)
				if rec.Code >= 500 {
					t.Fatalf("%s %s: %d\n%s", method, path, rec.Code, rec.Body)
				}
				if rec.Code == http.StatusOK && (tok != token || strings.HasSuffix(path, "/pickup") || method == http.MethodPost) {
					t.Fatalf("%s %s opened a page", method, path)
				}
			}
		}
		if got := h.State().Vector(); !reflect.DeepEqual(got, before) {
			t.Fatalf("token %q changed the replica", tok)
		}
	})
}
