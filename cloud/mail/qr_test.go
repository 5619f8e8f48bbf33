package mail

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"image/png"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
)

// TestQRDecodesUpright renders invitations for many random tokens of a real
// token's length and decodes each QR code from the PNG, upright, as a
// decoder of a clean digital image (gozxing's pure-barcode mode, which
// reads the module grid instead of searching for finder patterns). That
// needs a whole number of pixels per module: scaled to a fixed 256 px, the
// same mode read none of 300 codes. (gozxing's pattern search misses one or
// two in a hundred synthetic codes whatever the rendering; a camera sees
// the code at other angles and retries.)
func TestQRDecodesUpright(t *testing.T) {
	n := 200
	if testing.Short() || raceOn {
		n = 30
	}
	from := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	for i := range n {
		raw := make([]byte, 150)
		if _, err := rand.Read(raw); err != nil {
			t.Fatal(err)
		}
		token := "GH1." + base64.RawURLEncoding.EncodeToString(raw)
		m, err := RenderInvitation(Invitation{To: "g@example.com", Token: token, CheckInURL: "https://example.com/guest/x",
			GuestName: "G", SiteName: "S", From: from, Until: from.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Inline) != 1 || m.Inline[0].ContentID != QRContentID {
			t.Fatalf("inline parts %+v, want the QR code", m.Inline)
		}
		img, err := png.Decode(bytes.NewReader(m.Inline[0].Data))
		if err != nil {
			t.Fatal(err)
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		res, err := gzqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
		if err != nil {
			t.Fatalf("token %d (%d bytes): QR code does not decode: %v", i, len(token), err)
		}
		if res.GetText() != token {
			t.Fatalf("token %d: QR code decodes to another text", i)
		}
	}
}
