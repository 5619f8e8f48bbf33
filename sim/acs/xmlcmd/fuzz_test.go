package xmlcmd

import "testing"

// FuzzDecodeCommand checks that the XML request decoder (form field and
// command) and the ACCESSLEVELS reader never panic and return a command
// or an error, never both. The corpus is in testdata/fuzz/FuzzDecodeCommand.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`<NETBOX-API sessionid='1'><COMMAND name='AddPerson' num='1'><PARAMS><PERSONID>a</PERSONID><LASTNAME>b</LASTNAME><ACCESSLEVELS><ACCESSLEVEL>x</ACCESSLEVEL></ACCESSLEVELS></PARAMS></COMMAND></NETBOX-API>`), "text/xml")
	f.Add([]byte(`APIcommand=%3CNETBOX-API%3E%3CCOMMAND+name%3D%27Login%27%2F%3E%3C%2FNETBOX-API%3E`), "application/x-www-form-urlencoded")
	f.Add([]byte(`<NETBOX-API><COMMAND name='ModifyPerson'><PARAMS><ACCESSLEVELS><ACCESSLEVEL><ACCESSLEVELNAME>x</ACCESSLEVELNAME><DELETE>1</DELETE></ACCESSLEVEL></ACCESSLEVELS></PARAMS></COMMAND></NETBOX-API>`), "")
	f.Add([]byte(`<NETBOX-API><COMMAND name='X'></COMMAND></NETBOX-API><!-- c --> <?p?>`), "")
	f.Fuzz(func(t *testing.T, b []byte, contentType string) {
		x, err := formBody(b, contentType)
		if err != nil {
			return
		}
		c, err := decodeCommand(x)
		if (c == nil) == (err == nil) {
			t.Fatalf("decodeCommand returned %v and %v", c, err)
		}
		if c != nil {
			if n, ok := c.Params["ACCESSLEVELS"]; ok {
				accessLevels(n)
			}
		}
	})
}
