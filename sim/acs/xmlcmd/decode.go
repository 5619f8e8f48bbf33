package xmlcmd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// node is a generic XML element: commands' parameters are read from a
// tree of these, so that every command validates its own.
type node struct {
	XMLName xml.Name
	Text    string `xml:",chardata"`
	Nodes   []node `xml:",any"`
}

// text returns the trimmed text of n.
func (n *node) text() string { return strings.TrimSpace(n.Text) }

// command is a decoded request: one COMMAND with its parameters by name.
type command struct {
	SessionID string
	Name      string
	Num       string
	Params    map[string]*node
}

// param returns the text of the parameter name and whether it was given.
func (c *command) param(name string) (string, bool) {
	n, ok := c.Params[name]
	if !ok {
		return "", false
	}
	return n.text(), true
}

type wireRequest struct {
	XMLName   xml.Name `xml:"NETBOX-API"`
	SessionID string   `xml:"sessionid,attr"`
	Commands  []struct {
		Name   string `xml:"name,attr"`
		Num    string `xml:"num,attr"`
		Params *node  `xml:"PARAMS"`
	} `xml:"COMMAND"`
}

// errMalformed marks a request that cannot be read (APIERROR 1).
var errMalformed = errors.New("malformed request")

// formBody returns the XML of a request body: the APIcommand field of a
// form, or the body itself when it is XML.
func formBody(body []byte, contentType string) ([]byte, error) {
	if strings.HasPrefix(contentType, "application/x-www-form-urlencoded") || bytes.HasPrefix(body, []byte("APIcommand=")) {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: form: %v", errMalformed, err)
		}
		c := v.Get("APIcommand")
		if c == "" {
			return nil, fmt.Errorf("%w: no APIcommand field in the form", errMalformed)
		}
		return []byte(c), nil
	}
	return body, nil
}

// decodeCommand reads one <NETBOX-API> request with exactly one COMMAND.
// It returns an error wrapping errMalformed for anything else.
func decodeCommand(b []byte) (*command, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	var req wireRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: after NETBOX-API: %v", errMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text after NETBOX-API", errMalformed)
			}
		case xml.StartElement:
			return nil, fmt.Errorf("%w: element <%s> after NETBOX-API", errMalformed, t.Name.Local)
		}
	}
	if len(req.Commands) != 1 {
		return nil, fmt.Errorf("%w: want one COMMAND, found %d", errMalformed, len(req.Commands))
	}
	rc := req.Commands[0]
	if rc.Name == "" {
		return nil, fmt.Errorf("%w: COMMAND has no name", errMalformed)
	}
	c := &command{SessionID: strings.TrimSpace(req.SessionID), Name: rc.Name, Num: rc.Num, Params: map[string]*node{}}
	if rc.Params != nil {
		for i := range rc.Params.Nodes {
			n := &rc.Params.Nodes[i]
			name := strings.ToUpper(n.XMLName.Local)
			if _, dup := c.Params[name]; dup {
				return nil, fmt.Errorf("%w: parameter %s given twice", errMalformed, name)
			}
			c.Params[name] = n
		}
	}
	return c, nil
}

// levelChange is one entry of an ACCESSLEVELS parameter.
type levelChange struct {
	Name   string
	Delete bool
	Block  bool // given as <ACCESSLEVEL><ACCESSLEVELNAME>…: additive
}

// accessLevels reads an ACCESSLEVELS parameter: a plain list
// (<ACCESSLEVEL>Name</ACCESSLEVEL>…), which replaces every level, or
// blocks (<ACCESSLEVEL><ACCESSLEVELNAME>Name</ACCESSLEVELNAME>
// <DELETE>1</DELETE></ACCESSLEVEL>), which add or remove one each.
func accessLevels(n *node) ([]levelChange, error) {
	var out []levelChange
	for i := range n.Nodes {
		l := &n.Nodes[i]
		if l.XMLName.Local != "ACCESSLEVEL" {
			return nil, fmt.Errorf("ACCESSLEVELS holds <%s>, want ACCESSLEVEL", l.XMLName.Local)
		}
		if len(l.Nodes) == 0 {
			if l.text() == "" {
				return nil, errors.New("an empty ACCESSLEVEL")
			}
			out = append(out, levelChange{Name: l.text()})
			continue
		}
		lc := levelChange{Block: true}
		for j := range l.Nodes {
			f := &l.Nodes[j]
			switch f.XMLName.Local {
			case "ACCESSLEVELNAME":
				lc.Name = f.text()
			case "DELETE":
				lc.Delete = f.text() == "1" || strings.EqualFold(f.text(), "TRUE")
			default:
				return nil, fmt.Errorf("ACCESSLEVEL holds <%s>, want ACCESSLEVELNAME or DELETE", f.XMLName.Local)
			}
		}
		if lc.Name == "" {
			return nil, errors.New("an ACCESSLEVEL block without ACCESSLEVELNAME")
		}
		out = append(out, lc)
	}
	blocks := 0
	for _, lc := range out {
		if lc.Block {
			blocks++
		}
	}
	if blocks != 0 && blocks != len(out) {
		return nil, errors.New("ACCESSLEVELS mixes plain names and ACCESSLEVELNAME blocks")
	}
	return out, nil
}
