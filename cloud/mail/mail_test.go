package mail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/gatehouse/gatehouse/access"
)

func startCatcher(t *testing.T) *Catcher {
	t.Helper()
	c, err := StartCatcher("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func senderTo(t *testing.T, addr string) *Sender {
	t.Helper()
	s, err := NewSender(Config{Addr: addr, From: "Gatehouse <visits@example.test>", TLS: "none", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestInvitationOverSMTP sends an invitation through a real SMTP exchange,
// reads it back from the server, decodes the QR code from the PNG and
// verifies the token it carries.
func TestInvitationOverSMTP(t *testing.T) {
	c := startCatcher(t)
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	signer, err := access.NewTokenSigner(priv, rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	ids := access.NewIDGen(rand.NewChaCha8([32]byte{2}))
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	id := func() access.ID { v, _ := ids.New(from); return v }
	claims := access.TokenClaims{Visit: id(), Site: id(), Guest: id(), NotBefore: from.Add(-time.Hour), Expires: from.Add(10 * time.Hour)}
	token, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	msg, err := RenderInvitation(Invitation{
		To: "anna@example.test", GuestName: "Anna Müller <script>", HostName: "Bob", SiteName: "Demo HQ",
		From: from, Until: from.Add(8 * time.Hour), Location: berlin, Token: token,
		CheckInURL: "http://127.0.0.1:8080/checkin/abc", Escorted: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	msg.ID = "visit-1@gatehouse.test"
	if err := senderTo(t, c.Addr()).Send(ctxT(t), msg); err != nil {
		t.Fatal(err)
	}
	got, err := c.Wait(ctxT(t), func(m Caught) bool { return m.ID == "visit-1@gatehouse.test" })
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "Your visit to Demo HQ" || len(got.To) != 1 || got.To[0] != "anna@example.test" {
		t.Errorf("envelope/subject: %+v", got)
	}
	for _, want := range []string{"Anna Müller", "http://127.0.0.1:8080/checkin/abc", token, "Tuesday 24 November 2026, 10:00", "picked you up"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("text part lacks %q:\n%s", want, got.Text)
		}
	}
	if strings.Contains(got.HTML, "<script>") || !strings.Contains(got.HTML, "cid:"+QRContentID) {
		t.Errorf("HTML part not escaped or without the QR image:\n%s", got.HTML)
	}
	qr, ok := got.Part(QRContentID)
	if !ok || qr.ContentType != "image/png" {
		t.Fatalf("no inline QR image among %d parts", len(got.Parts))
	}
	img, err := png.Decode(bytes.NewReader(qr.Data))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatal(err)
	}
	var ring access.TokenKeyring
	if err := ring.Add(access.TokenKey{Public: priv.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatal(err)
	}
	verified, err := ring.Verify(res.GetText(), from)
	if err != nil {
		t.Fatalf("token from the QR code: %v", err)
	}
	if verified.Visit != claims.Visit {
		t.Errorf("QR code carries visit %s, want %s", verified.Visit, claims.Visit)
	}
}

func TestBadMessagesAreRefusedBeforeSending(t *testing.T) {
	c := startCatcher(t)
	s := senderTo(t, c.Addr())
	for _, m := range []Message{
		{To: "a@example.test", Subject: "no text"},
		{To: "not an address", Subject: "x", Text: "x"},
		{To: "", Subject: "x", Text: "x"},
	} {
		if err := s.Send(ctxT(t), m); !errors.Is(err, ErrBadMessage) {
			t.Errorf("Send(%+v) = %v, want ErrBadMessage", m, err)
		}
	}
	if _, err := RenderInvitation(Invitation{To: "a@example.test"}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("invitation without a token: %v", err)
	}
	if n := len(c.Messages()); n != 0 {
		t.Errorf("%d bad messages reached the server", n)
	}
}

func TestSendToAnUnreachableRelayFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = senderTo(t, addr).Send(ctxT(t), Message{To: "a@example.test", Subject: "x", Text: "x"})
	if err == nil || errors.Is(err, ErrBadMessage) {
		t.Errorf("send to a closed port = %v, want a retryable error", err)
	}
}

func TestOversizedMessageIsRefusedByTheCatcher(t *testing.T) {
	c := startCatcher(t)
	big := Message{To: "a@example.test", Subject: "big", Text: "x",
		Inline: []Part{{Name: "big.bin", ContentType: "application/octet-stream", ContentID: "big", Data: bytes.Repeat([]byte{7}, maxCaughtBytes)}}}
	if err := senderTo(t, c.Addr()).Send(ctxT(t), big); err == nil {
		t.Error("a message over the limit was accepted")
	}
	if n := len(c.Messages()); n != 0 {
		t.Errorf("%d messages caught", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "localhost", From: "a@b.test"},
		{Addr: "localhost:0", From: "a@b.test"},
		{Addr: "localhost:25", From: "nobody"},
		{Addr: "localhost:25", From: "a@b.test", TLS: "sometimes"},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestCatcherPages(t *testing.T) {
	c := startCatcher(t)
	msg, err := RenderInvitation(Invitation{To: "g@example.test", GuestName: "G", HostName: "H", SiteName: "S",
		From: time.Now(), Until: time.Now().Add(time.Hour), Token: "GH1.test", CheckInURL: "http://x.test/c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := senderTo(t, c.Addr()).Send(ctxT(t), msg); err != nil {
		t.Fatal(err)
	}
	m, err := c.Wait(ctxT(t), func(Caught) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	get := func(path string) (int, string, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}
	if code, _, body := get("/mail"); code != 200 || !strings.Contains(body, "Your visit to S") {
		t.Errorf("/mail: %d %s", code, body)
	}
	if code, _, body := get("/mail/1"); code != 200 || !strings.Contains(body, "GH1.test") || !strings.Contains(body, "/mail/1/part/0") {
		t.Errorf("/mail/1: %d %s", code, body)
	}
	if code, ctype, body := get("/mail/1/part/0"); code != 200 || ctype != "image/png" || body != string(m.Parts[0].Data) {
		t.Errorf("/mail/1/part/0: %d %s", code, ctype)
	}
	for _, p := range []string{"/mail/2", "/mail/x", "/mail/1/part/9", "/mail/1/part/-1"} {
		if code, _, _ := get(p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
}
