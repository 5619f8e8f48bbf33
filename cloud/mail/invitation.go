package mail

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// Invitation is what the invitation email says.
type Invitation struct {
	To         string // guest's address
	GuestName  string
	HostName   string
	SiteName   string
	From       time.Time // visit window, shown in Location
	Until      time.Time
	Location   *time.Location
	Token      string // the signed invitation token the QR code carries
	CheckInURL string // the online pre-check-in page for this guest
	Escorted   bool
}

// qrPixelsPerModule is the size of one QR module in the invitation's PNG.
const qrPixelsPerModule = 5

// QRContentID is the content ID of the QR code image in an invitation.
const QRContentID = "qr@gatehouse"

var invitationHTML = template.Must(template.New("invitation").Parse(`<!doctype html>
<html><body style="font-family: sans-serif">
<p>Hello {{.GuestName}},</p>
<p>{{.HostName}} has invited you to <b>{{.SiteName}}</b> on {{.When}}.</p>
<p>Please check in online before you come: <a href="{{.CheckInURL}}">{{.CheckInURL}}</a></p>
<p>When you arrive, show this code at the kiosk:</p>
<p><img src="cid:{{.QR}}" alt="your check-in code" width="256" height="256"></p>
{{if .Escorted}}<p>{{.HostName}} will meet you at reception; your card opens doors once they have picked you up.</p>{{end}}
<p>Bring the identity document you will show at the kiosk.</p>
</body></html>
`))

// RenderInvitation returns the invitation email: a text part with the
// check-in link and the token (for kiosks that accept typed codes), and an
// HTML part with the QR code as an inline PNG.
func RenderInvitation(in Invitation) (Message, error) {
	if in.To == "" || in.Token == "" || in.CheckInURL == "" {
		return Message{}, fmt.Errorf("%w: invitation needs a recipient, a token and a check-in link", ErrBadMessage)
	}
	loc := in.Location
	if loc == nil {
		loc = time.UTC
	}
	when := in.From.In(loc).Format("Monday 2 January 2006, 15:04") + "–" + in.Until.In(loc).Format("15:04 MST")
	// A whole number of pixels per module (a negative size to go-qrcode):
	// scaled to a fixed size, modules straddle pixels and readers
	// misjudge the format bits of some codes.
	png, err := qrcode.Encode(in.Token, qrcode.Medium, -qrPixelsPerModule)
	if err != nil {
		return Message{}, fmt.Errorf("%w: qr code: %v", ErrBadMessage, err)
	}
	var html bytes.Buffer
	err = invitationHTML.Execute(&html, map[string]any{
		"GuestName": in.GuestName, "HostName": in.HostName, "SiteName": in.SiteName, "When": when,
		"CheckInURL": in.CheckInURL, "QR": QRContentID, "Escorted": in.Escorted,
	})
	if err != nil {
		return Message{}, fmt.Errorf("mail: render invitation: %w", err)
	}
	var text strings.Builder
	fmt.Fprintf(&text, "Hello %s,\n\n%s has invited you to %s on %s.\n\n", in.GuestName, in.HostName, in.SiteName, when)
	fmt.Fprintf(&text, "Please check in online before you come:\n%s\n\n", in.CheckInURL)
	fmt.Fprintf(&text, "When you arrive, show the QR code of this email at the kiosk, or enter this code:\n%s\n\n", in.Token)
	if in.Escorted {
		fmt.Fprintf(&text, "%s will meet you at reception; your card opens doors once they have picked you up.\n\n", in.HostName)
	}
	text.WriteString("Bring the identity document you will show at the kiosk.\n")
	return Message{
		To:      in.To,
		Subject: "Your visit to " + in.SiteName,
		Text:    text.String(),
		HTML:    html.String(),
		Inline:  []Part{{Name: "checkin-code.png", ContentType: "image/png", ContentID: QRContentID, Data: png}},
	}, nil
}
