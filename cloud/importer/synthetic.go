package importer

import (
	"bufio"
	"io"
	"strconv"
)

// SyntheticOccupiers and SyntheticGroups are the occupier and group names
// WriteSynthetic uses; a lookup for a synthetic file must know them.
var (
	SyntheticOccupiers = []string{"Acme Ltd", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Tyrell"}
	SyntheticGroups    = []string{"Lobby", "Floor 1", "Floor 2", "Floor 3", "Floor 4", "Car park", "Gym", "Roof"}
)

// SyntheticHeader is the header of the files WriteSynthetic writes.
const SyntheticHeader = "first_name,last_name,email,occupier,card_format,card_facility,card_number,groups,offline_access,valid_until\n"

// WriteSynthetic writes a valid file of n occupier users for tests and
// benchmarks: header SyntheticHeader, then row i (from 0, on line i+2) with
// a unique card (SyntheticCard(i)), one of SyntheticOccupiers and two of
// SyntheticGroups. Every 1000th row has a quoted name with a comma. It
// returns the writer's error.
func WriteSynthetic(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(SyntheticHeader)
	var b []byte
	for i := range n {
		b = b[:0]
		if i%1000 == 999 {
			b = append(b, `"Anne, Marie",`...)
		} else {
			b = append(b, "Person"...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ',')
		}
		b = append(b, "Smith,person"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "@example.com,"...)
		b = append(b, SyntheticOccupiers[i%len(SyntheticOccupiers)]...)
		b = append(b, ',')
		format, num, fac := SyntheticCard(i)
		b = append(b, format...)
		b = append(b, ',')
		b = append(b, fac...)
		b = append(b, ',')
		b = append(b, num...)
		b = append(b, ',')
		b = append(b, SyntheticGroups[i%len(SyntheticGroups)]...)
		b = append(b, ';')
		b = append(b, SyntheticGroups[(i/len(SyntheticGroups))%len(SyntheticGroups)]...)
		if i%2 == 0 {
			b = append(b, ",true,"...)
		} else {
			b = append(b, ",false,2030-01-01"...)
		}
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// SyntheticCard returns the card of row i of a synthetic file: an h10304
// card for even i, a raw32 number for odd i, all distinct for i below 2^30.
func SyntheticCard(i int) (format, num, fac string) {
	if i%2 == 0 {
		return "h10304", strconv.Itoa(i % 524288), strconv.Itoa(1 + i/524288)
	}
	return "raw32", strconv.Itoa(10_000_000 + i), ""
}
