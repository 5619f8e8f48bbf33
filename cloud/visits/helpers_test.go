package visits_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/mail"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1/visitv1connect"
	"github.com/gatehouse/gatehouse/replication"
)

// API keys of the test hub, one per role.
var apiKeys = map[auth.Role]string{
	auth.Admin:    "test-admin-key-0123456789",
	auth.Security: "test-security-key-0123456789",
	auth.Host:     "test-host-key-0123456789abc",
}

// IDs of the test building.
var (
	siteID   = access.ID("01JS1TE0000000000000000001")
	hostID   = access.ID("01JH0ST0000000000000000001")
	lobby    = access.ID("01JGRP00000000000000000001")
	lab      = access.ID("01JGRP00000000000000000002")
	otherSit = access.ID("01JS1TE0000000000000000002")
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// MustStartCatcher starts an SMTP catcher on addr, closed at cleanup.
func MustStartCatcher(t testing.TB, addr string) *mail.Catcher {
	t.Helper()
	c, err := mail.StartCatcher(addr, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// freeAddr returns a loopback address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// MustOpenHub starts a hub with a Badger store in dir, API keys for every
// role and its mail sent to mailAddr; it is closed at cleanup (closing it
// earlier is fine).
func MustOpenHub(t testing.TB, dir, mailAddr string) *hub.Hub {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(dir, "store")
	cfg.Mail = mail.Config{Addr: mailAddr, From: "Gatehouse <visits@gatehouse.test>", TLS: "none", Timeout: 5 * time.Second}
	cfg.Visits.RetryMin, cfg.Visits.RetryMax = 20*time.Millisecond, 300*time.Millisecond
	for role, key := range apiKeys {
		cfg.APIKeys = append(cfg.APIKeys, auth.Key{ID: string(role), SHA256: auth.HashKey(key), Role: role})
	}
	h := hub.New(cfg, testLogger(t))
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if h.Visits() == nil {
		t.Fatal("the hub serves no visitor service")
	}
	return h
}

// client returns a VisitService client of the hub with role's key ("" for
// none).
func client(h *hub.Hub, role auth.Role) visitv1connect.VisitServiceClient {
	var opts []connect.ClientOption
	if role != "" {
		opts = append(opts, connect.WithInterceptors(auth.Bearer(apiKeys[role])))
	}
	return visitv1connect.NewVisitServiceClient(http.DefaultClient, "http://"+h.Addr(), opts...)
}

// seedBuilding writes the test site and its groups into the hub's replica.
func seedBuilding(t testing.TB, h *hub.Hub) {
	t.Helper()
	_, err := h.State().Write(ctxT(t), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindSite, string(siteID), replication.SetOp("name", "Demo HQ"), replication.SetOp("time_zone", "Europe/Berlin"))
		tx.Change(replication.KindGroup, string(lobby), replication.SetOp("site", string(siteID)), replication.SetOp("name", "Lobby"))
		tx.Change(replication.KindGroup, string(lab), replication.SetOp("site", string(siteID)), replication.SetOp("name", "Lab"))
		tx.Change(replication.KindPerson, string(hostID), replication.SetOp("kind", "access_user"),
			replication.SetOp("name", "Bob Host"), replication.SetOp("email", "bob@example.test"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mustPutType stores a visitor type through the API.
func mustPutType(t *testing.T, h *hub.Hub, vt *visitv1.VisitorType) *visitv1.VisitorType {
	t.Helper()
	res, err := client(h, auth.Admin).PutVisitorType(ctxT(t), connect.NewRequest(&visitv1.PutVisitorTypeRequest{VisitorType: vt}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetVisitorType()
}

// window is a visit window starting in an hour.
func window(d time.Duration) (from, until int64) {
	f := time.Now().Add(time.Hour).Truncate(time.Minute)
	return f.UnixMilli(), f.Add(d).UnixMilli()
}

// inviteReq is an invitation of guests to the test site by the test host.
func inviteReq(typeID string, profiles []string, escort bool, d time.Duration, guests ...*visitv1.Guest) *visitv1.InviteRequest {
	from, until := window(d)
	return &visitv1.InviteRequest{SiteId: string(siteID), HostId: string(hostID), VisitorTypeId: typeID, FromMs: from, UntilMs: until,
		ProfileIds: profiles, Escort: escort, Guests: guests}
}

func guest(given, family string) *visitv1.Guest {
	return &visitv1.Guest{GivenName: given, FamilyName: family, Email: strings.ToLower(given) + "@example.test"}
}

func mustInvite(t testing.TB, h *hub.Hub, req *visitv1.InviteRequest) *visitv1.InviteResponse {
	t.Helper()
	res, err := client(h, auth.Host).Invite(ctxT(t), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

func mustGet(t *testing.T, h *hub.Hub, id string) *visitv1.Visit {
	t.Helper()
	res, err := client(h, auth.Host).GetVisit(ctxT(t), connect.NewRequest(&visitv1.GetVisitRequest{VisitId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetVisit()
}

// waitVisit polls visit id until cond holds (or fails the test at the
// deadline), and returns it.
func waitVisit(t *testing.T, h *hub.Hub, id string, what string, cond func(*visitv1.Visit) bool) *visitv1.Visit {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := mustGet(t, h, id)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("visit %s: %s: not reached; last %v", id, what, v)
		}
		select {
		case <-time.After(10 * time.Millisecond): // polling interval, not synchronisation
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// mailTo waits for the first message caught for addr.
func mailTo(t testing.TB, c *mail.Catcher, addr string) mail.Caught {
	t.Helper()
	m, err := c.Wait(ctxT(t), func(m mail.Caught) bool { return len(m.To) == 1 && m.To[0] == addr })
	if err != nil {
		t.Fatalf("no mail to %s: %v", addr, err)
	}
	return m
}

// countTo returns how many caught messages went to addr.
func countTo(c *mail.Catcher, addr string) int {
	n := 0
	for _, m := range c.Messages() {
		if len(m.To) == 1 && m.To[0] == addr {
			n++
		}
	}
	return n
}

// qrToken decodes the QR code of an invitation.
func qrToken(t *testing.T, m mail.Caught) string {
	t.Helper()
	part, ok := m.Part(mail.QRContentID)
	if !ok {
		t.Fatalf("no QR code in %q", m.Subject)
	}
	img, err := png.Decode(bytes.NewReader(part.Data))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// The image is a generated code, not a photo: try the plain reader,
	// then the pure-barcode and try-harder modes (the detector's estimate
	// of the module size is off for some contents).
	var errs []error
	for _, hints := range []map[gozxing.DecodeHintType]any{
		nil,
		{gozxing.DecodeHintType_PURE_BARCODE: true},
		{gozxing.DecodeHintType_TRY_HARDER: true},
	} {
		res, err := qrcode.NewQRCodeReader().Decode(bmp, hints)
		if err == nil {
			return res.GetText()
		}
		errs = append(errs, err)
	}
	t.Fatalf("QR code not decoded: %v", errs)
	return ""
}

// ring returns a keyring of the hub's published keys, read from
// GET /visits/token-keys as a site would.
func ring(t *testing.T, h *hub.Hub) *access.TokenKeyring {
	t.Helper()
	res, err := client(h, auth.Host).ListTokenKeys(ctxT(t), connect.NewRequest(&visitv1.ListTokenKeysRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var r access.TokenKeyring
	for _, k := range res.Msg.GetKeys() {
		var retired time.Time
		if k.GetRetiredMs() != 0 {
			retired = time.UnixMilli(k.GetRetiredMs())
		}
		if err := r.Add(access.TokenKey{Public: ed25519.PublicKey(k.GetPublicKey()), Retired: retired}); err != nil {
			t.Fatal(err)
		}
	}
	return &r
}

// checkinLink returns the pre-check-in link of an invitation's text.
func checkinLink(t testing.TB, m mail.Caught) string {
	t.Helper()
	link := regexp.MustCompile(`http://\S+/guest/\S+`).FindString(m.Text)
	if link == "" {
		t.Fatalf("no check-in link in:\n%s", m.Text)
	}
	return link
}

// page is a guest page as fetched.
type page struct {
	status int
	body   string
}

func get(t *testing.T, link string) page {
	t.Helper()
	res, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return page{res.StatusCode, string(b)}
}

var formTokenRE = regexp.MustCompile(`name="form_token" value="([^"]+)"`)

// formToken returns the form token of a page.
func (p page) formToken(t *testing.T) string {
	t.Helper()
	m := formTokenRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no form on the page (%d):\n%s", p.status, p.body)
	}
	return m[1]
}

// file is an upload of the pre-check-in form.
type file struct {
	field, name string
	data        []byte
}

// postForm posts fields and files as multipart/form-data, not following
// redirects.
func postForm(t *testing.T, link string, fields map[string]string, files ...file) (int, string, string) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	for _, f := range files {
		fw, _ := w.CreateFormFile(f.field, f.name)
		_, _ = fw.Write(f.data)
	}
	_ = w.Close()
	req, _ := http.NewRequest(http.MethodPost, link, &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(b)
}

func postValues(t *testing.T, link string, v url.Values, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// pngBytes is a small PNG image.
func pngBytes() []byte {
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.White)
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// siteCheckIn applies, as site siteID would through replication, the
// check-in of visit id.
func siteCheckIn(t *testing.T, h *hub.Hub, id string) {
	t.Helper()
	src := replication.Source{Origin: string(siteID), Lane: replication.LaneNormal}
	w, err := replication.NewWriter(string(siteID), h.State().Vector())
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.Make(replication.Stamp{Wall: time.Now().UnixNano(), Origin: string(siteID)}, replication.KindVisit, id,
		replication.AdvanceOp(access.VisitCheckedIn))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.State().Apply(ctxT(t), src, []replication.Delta{d}, nil); err != nil {
		t.Fatal(err)
	}
}

// connectCode returns err's Connect code, or 0.
func connectCode(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}
