package hateoas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// cardholderIn is a decoded cardholder body of a POST or a PATCH. Nil
// fields were absent.
type cardholderIn struct {
	FirstName, LastName, Description *string
	Authorised                       *bool
	Division                         *hrefIn
	PDFs                             map[string]*string // "@Name": value; nil clears
	Cards                            *changesIn[cardIn]
	AccessGroups                     *changesIn[membershipIn]
}

type hrefIn struct {
	Href string `json:"href"`
}

// changesIn is the add/update/remove block of a PATCH; a POST's array
// becomes Add.
type changesIn[T any] struct {
	Add    []T      `json:"add"`
	Update []T      `json:"update"`
	Remove []hrefIn `json:"remove"`
}

type cardIn struct {
	Href             string  `json:"href"`
	Type             *hrefIn `json:"type"`
	Number           *string `json:"number"`
	CardSerialNumber *string `json:"cardSerialNumber"`
	IssueLevel       *int    `json:"issueLevel"`
	Status           *struct {
		Value string `json:"value"`
	} `json:"status"`
	From  *string `json:"from"`
	Until *string `json:"until"`
}

type membershipIn struct {
	Href        string  `json:"href"`
	AccessGroup *hrefIn `json:"accessGroup"`
	From        *string `json:"from"`
	Until       *string `json:"until"`
}

// strict decodes b into v, refusing unknown fields and trailing data.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// decodeCardholder decodes a cardholder body; patch selects PATCH's
// add/update/remove form for cards and accessGroups, otherwise they are
// arrays. It returns a 400-kind error naming the first problem.
func decodeCardholder(b []byte, patch bool) (*cardholderIn, error) {
	var raw map[string]json.RawMessage
	if err := strict(b, &raw); err != nil {
		return nil, bad("malformed JSON body: %v", err)
	}
	if raw == nil {
		return nil, bad("malformed JSON body: want an object")
	}
	in := &cardholderIn{PDFs: map[string]*string{}}
	for k, v := range raw {
		var err error
		switch {
		case k == "firstName":
			err = strict(v, &in.FirstName)
		case k == "lastName":
			err = strict(v, &in.LastName)
		case k == "description":
			err = strict(v, &in.Description)
		case k == "authorised":
			err = strict(v, &in.Authorised)
		case k == "division":
			err = strict(v, &in.Division)
		case strings.HasPrefix(k, "@") && len(k) > 1:
			var p *string
			err = strict(v, &p)
			in.PDFs[k[1:]] = p
		case k == "cards" && patch:
			err = strict(v, &in.Cards)
		case k == "cards":
			var add []cardIn
			err = strict(v, &add)
			in.Cards = &changesIn[cardIn]{Add: add}
		case k == "accessGroups" && patch:
			err = strict(v, &in.AccessGroups)
		case k == "accessGroups":
			var add []membershipIn
			err = strict(v, &add)
			in.AccessGroups = &changesIn[membershipIn]{Add: add}
		case k == "href" || k == "id":
			// Echoed from a GET; ignored, as the real API does.
		default:
			return nil, bad("unknown field %q", k)
		}
		if err != nil {
			return nil, bad("field %q: %v", k, err)
		}
	}
	return in, nil
}

// hrefID returns the last segments of an href after /api/<prefix>/, which
// must start with the given collection path (e.g. "cardholders"). It
// returns the IDs in the href in order, or a 400-kind error.
func hrefIDs(h, prefix, what string, shape ...string) ([]string, error) {
	u, err := url.Parse(h)
	if err != nil || h == "" {
		return nil, bad("invalid %s href: %q", what, h)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2+2*len(shape) || parts[0] != "api" || parts[1] != prefix {
		return nil, bad("invalid %s href: %s", what, h)
	}
	var ids []string
	for i, s := range shape {
		if parts[2+2*i] != s || parts[3+2*i] == "" {
			return nil, bad("invalid %s href: %s", what, h)
		}
		ids = append(ids, parts[3+2*i])
	}
	return ids, nil
}

// checkTime checks a from/until value: RFC 3339 or "" (clears).
func checkTime(field, v string) error {
	if v == "" {
		return nil
	}
	if _, err := time.Parse(time.RFC3339, v); err != nil {
		return bad("%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", field, v)
	}
	return nil
}

var (
	digits = regexp.MustCompile(`^[0-9]{1,20}$`)
	hexRE  = regexp.MustCompile(`^[0-9A-Fa-f]{1,32}$`)
)
