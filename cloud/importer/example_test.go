package importer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/importer"
)

// An import of occupier users with card 900 already on the platform: every
// bad row is reported, and nothing is imported.
func ExampleImport() {
	const file = `first_name,last_name,email,occupier,card_format,card_facility,card_number,groups
Ann,Lee,ann@example.com,Acme Ltd,h10301,1,100,Lobby
Bob,Jones,bob example.com,,raw32,,900,
Cid,Ray,,Nowhere Inc,h10301,1,100,Lobby;Nowhere
`
	known := map[string]access.ID{"Acme Ltd": access.MustNewID(), "Lobby": access.MustNewID()}
	lookup := func(_ context.Context, refs []string) (map[string]access.ID, error) {
		out := map[string]access.ID{}
		for _, r := range refs {
			if id, ok := known[r]; ok {
				out[r] = id
			}
		}
		return out, nil
	}
	res, err := importer.Import(context.Background(), strings.NewReader(file), importer.Options{
		Kind:      access.Occupier,
		Groups:    lookup,
		Occupiers: lookup,
		CardsTaken: func(_ context.Context, nums []access.CardNumber) ([]access.CardNumber, error) {
			for _, n := range nums {
				if n == 900 {
					return []access.CardNumber{n}, nil
				}
			}
			return nil, nil
		},
	})
	var rep *importer.Report
	if errors.As(err, &rep) {
		fmt.Println(res == nil, rep.Rows, "rows")
		for _, e := range rep.Errors {
			fmt.Println(e)
		}
	}
	// Output:
	// true 3 rows
	// line 3, column 3 (email): "bob example.com" is not an email address
	// line 3, column 4 (occupier): an occupier user needs an occupier
	// line 3, column 7 (card_number): card number 900 is already on the platform
	// line 4, column 4 (occupier): unknown occupier "Nowhere Inc"
	// line 4, column 7 (card_number): card number ***********7972 is also on line 2
	// line 4, column 8 (groups): unknown group "Nowhere"
}
