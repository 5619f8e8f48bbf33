package people

import (
	"math"

	"github.com/gatehouse/gatehouse/access"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
)

// cardNumber returns the platform number of spec, or an InvalidArgument
// error saying why it is malformed.
func cardNumber(spec *peoplev1.CardSpec) (access.CardNumber, error) {
	if spec == nil {
		return 0, invalid("card: required")
	}
	n, fac := spec.GetNumber(), spec.GetFacility()
	var max uint64
	switch spec.GetFormat() {
	case peoplev1.CardFormat_CARD_FORMAT_UNSPECIFIED, peoplev1.CardFormat_CARD_FORMAT_NUMBER:
		max = math.MaxUint64
	case peoplev1.CardFormat_CARD_FORMAT_RAW32:
		max = 1<<32 - 1
	case peoplev1.CardFormat_CARD_FORMAT_RAW56:
		max = 1<<56 - 1
	case peoplev1.CardFormat_CARD_FORMAT_H10301, peoplev1.CardFormat_CARD_FORMAT_CORP1000, peoplev1.CardFormat_CARD_FORMAT_H10304:
		f := map[peoplev1.CardFormat]access.WiegandFormat{peoplev1.CardFormat_CARD_FORMAT_H10301: access.H10301,
			peoplev1.CardFormat_CARD_FORMAT_CORP1000: access.Corporate1000, peoplev1.CardFormat_CARD_FORMAT_H10304: access.H10304}[spec.GetFormat()]
		c := access.WiegandCredential{Format: f, Facility: fac, Card: n}
		if _, _, err := access.EncodeWiegand(c); err != nil {
			return 0, invalid("card %s facility %d card %d: does not fit the format", f, fac, n)
		}
		return c.Number(), nil
	default:
		return 0, invalid("card: unknown format %d", spec.GetFormat())
	}
	if fac != 0 {
		return 0, invalid("card: a facility code is only for Wiegand formats")
	}
	if n == 0 || n > max {
		return 0, invalid("card number must be 1 to %d in format %s", max, formatName(spec.GetFormat()))
	}
	return access.CardNumber(n), nil
}

func formatName(f peoplev1.CardFormat) string {
	switch f {
	case peoplev1.CardFormat_CARD_FORMAT_RAW32:
		return "raw32"
	case peoplev1.CardFormat_CARD_FORMAT_RAW56:
		return "raw56"
	}
	return "number"
}

// cardProto describes c: its number decoded to the format it was made in.
func cardProto(c access.Card) *peoplev1.Card {
	out := &peoplev1.Card{Number: uint64(c.Number), NumberMasked: c.Number.Redacted(), Status: c.Status.String(), Card: uint64(c.Number)}
	if uint64(c.Number)>>48 != 0 {
		if w, err := access.WiegandFromNumber(c.Number); err == nil && w.Format != 0 {
			if _, _, err := access.EncodeWiegand(w); err == nil {
				out.Format = map[access.WiegandFormat]string{access.H10301: "h10301", access.Corporate1000: "corp1000", access.H10304: "h10304"}[w.Format]
				out.Facility, out.Card = w.Facility, w.Card
				return out
			}
		}
	}
	switch {
	case uint64(c.Number) < 1<<32:
		out.Format = "raw32"
	case uint64(c.Number) < 1<<56:
		out.Format = "raw56"
	default:
		out.Format = "number"
	}
	return out
}
