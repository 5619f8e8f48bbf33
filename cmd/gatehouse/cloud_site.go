package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/cloud/pki"
)

// CloudPKIConfig is the configuration of the operator's PKI verbs of
// `gatehouse cloud` (a --config file holds the same fields).
type CloudPKIConfig struct {
	// PKIDir is the hub's PKI directory (docs/security.md).
	PKIDir string `json:"pki_dir"`
	// Hosts are the hub's DNS names and IPs (pki init).
	Hosts brokerList `json:"hosts"`
	// CAValidity and HubValidity are the lifetimes of the CA and of the
	// hub's server certificate (pki init).
	CAValidity  textDuration `json:"ca_validity"`
	HubValidity textDuration `json:"hub_validity"`
	// SiteValidity is the lifetime of a site certificate (site add, renew).
	SiteValidity textDuration `json:"site_validity"`
	// HubURL is the hub's sync address, printed in the edge config snippet.
	HubURL string `json:"hub_url"`
	// ID, Name, Out, Serial and Reason are the site verbs' arguments.
	ID     string `json:"id"`
	Name   string `json:"name"`
	Out    string `json:"out"`
	Serial string `json:"serial"`
	Reason string `json:"reason"`
}

// CloudPKIMain runs the operator's PKI verbs (docs/security.md):
//
//	gatehouse cloud pki init    --pki-dir DIR --host 127.0.0.1,localhost
//	gatehouse cloud site add    --pki-dir DIR --id SITE_ID --name NAME --out DIR
//	gatehouse cloud site renew  --pki-dir DIR --id SITE_ID --out DIR
//	gatehouse cloud site revoke --pki-dir DIR --id SITE_ID | --serial SERIAL
//	gatehouse cloud site list   --pki-dir DIR
//
// Each runs once and returns; nothing is left running.
type CloudPKIMain struct {
	env
	Config CloudPKIConfig
	// Verb is "pki init", "site add", "site renew", "site revoke" or "site list".
	Verb string
}

// cloudPKIVerbs describes the verbs, in the order help lists them.
var cloudPKIVerbs = []struct{ verb, args, help string }{
	{"pki init", "--pki-dir DIR --host HOST[,HOST]", "create the hub's CA and its TLS server certificate for the hosts it is reached at; refuses to overwrite an existing CA"},
	{"site add", "--pki-dir DIR --id SITE_ID --name NAME --out DIR", "issue a new site's client certificate and token and write them, with the CA certificate, to --out for the site's edge nodes"},
	{"site renew", "--pki-dir DIR --id SITE_ID --out DIR", "issue a site a new certificate and key (its token is kept; the old certificate stays valid until it expires or is revoked by --serial)"},
	{"site revoke", "--pki-dir DIR (--id SITE_ID | --serial SERIAL)", "revoke every certificate and the token of a site (--id), or one certificate (--serial); the hub refuses them from the next handshake"},
	{"site list", "--pki-dir DIR", "list the certificates issued to sites"},
}

// isCloudPKIVerb reports whether args start a PKI verb of `gatehouse cloud`.
func isCloudPKIVerb(args []string) bool {
	return len(args) > 0 && (args[0] == "pki" || args[0] == "site")
}

// cloudPKIUsage prints the verbs of group ("pki" or "site").
func cloudPKIUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: gatehouse cloud %s <verb> [flags]\n\nThe hub's certificates and site credentials (docs/security.md).\n\nVerbs:\n", group)
	for _, v := range cloudPKIVerbs {
		if strings.HasPrefix(v.verb, group+" ") {
			fmt.Fprintf(w, "  %-12s %s\n      %s\n", v.verb, v.args, v.help)
		}
	}
	fmt.Fprintf(w, "\nRun \"gatehouse cloud %s <verb> --help\" for a verb's flags.\n", group)
}

// bindCloudPKI registers the flags of verb.
func bindCloudPKI(verb string) func(fs *flag.FlagSet, c *CloudPKIConfig) {
	return func(fs *flag.FlagSet, c *CloudPKIConfig) {
		fs.StringVar(&c.PKIDir, "pki-dir", c.PKIDir, "the hub's PKI `directory` (CA, hub certificate, revocation list, token hashes; required)")
		switch verb {
		case "pki init":
			fs.Var(&c.Hosts, "host", "the hub's DNS names and IP `addresses`, comma-separated, for its server certificate and the CA's name constraints (required)")
			fs.Var(&c.CAValidity, "ca-validity", "the `duration` the CA is valid for")
			fs.Var(&c.HubValidity, "hub-validity", "the `duration` the hub's server certificate is valid for")
		case "site add", "site renew":
			fs.StringVar(&c.ID, "id", c.ID, "the site's `ID` (a ULID, as in the site's edge configuration; required)")
			if verb == "site add" {
				fs.StringVar(&c.Name, "name", c.Name, "the site's display `name`, recorded in its certificate")
			}
			fs.StringVar(&c.Out, "out", c.Out, "`directory` to write the site's files to; none of them may exist yet (required)")
			fs.Var(&c.SiteValidity, "validity", "the `duration` the site certificate is valid for; renew it well before")
			fs.StringVar(&c.HubURL, "hub-url", c.HubURL, "the hub's sync `URL` the edge nodes will use, for the printed configuration snippet")
		case "site revoke":
			fs.StringVar(&c.ID, "id", c.ID, "revoke every live certificate and the token of the site with this `ID`")
			fs.StringVar(&c.Serial, "serial", c.Serial, "revoke only the certificate with this `serial` (hex, as \"site list\" prints it)")
			fs.StringVar(&c.Reason, "reason", c.Reason, "a `note` kept in the revocation list")
		}
	}
}

func defaultCloudPKIConfig() CloudPKIConfig {
	return CloudPKIConfig{
		CAValidity:   textDuration(pki.DefaultCAValidity),
		HubValidity:  textDuration(pki.DefaultHubValidity),
		SiteValidity: textDuration(pki.DefaultSiteValidity),
		HubURL:       "https://127.0.0.1:8443",
	}
}

// ParseFlags reads "pki VERB" or "site VERB" and the verb's flags.
func (m *CloudPKIMain) ParseFlags(args []string) error {
	group := args[0]
	if len(args) < 2 || args[1] == "-h" || args[1] == "-help" || args[1] == "--help" || args[1] == "help" {
		if len(args) < 2 {
			cloudPKIUsage(m.stderr, group)
			return fmt.Errorf("%w: name a verb of cloud %s", errUsage, group)
		}
		cloudPKIUsage(m.stdout, group)
		return flag.ErrHelp
	}
	m.Verb = group + " " + args[1]
	var help string
	for _, v := range cloudPKIVerbs {
		if v.verb == m.Verb {
			help = v.args + "\n\n" + strings.ToUpper(v.help[:1]) + v.help[1:]
		}
	}
	if help == "" {
		cloudPKIUsage(m.stderr, group)
		return fmt.Errorf("%w: unknown verb %q", errUsage, m.Verb)
	}
	m.Config = defaultCloudPKIConfig()
	rest, err := parseConfig("cloud "+m.Verb, args[2:], m.stderr, &m.Config, func(fs *flag.FlagSet, c *CloudPKIConfig) {
		bindCloudPKI(m.Verb)(fs, c)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: gatehouse cloud %s %s.\n\nFlags:\n", m.Verb, help)
			fs.PrintDefaults()
		}
	})
	if err != nil {
		return err
	}
	c := &m.Config
	switch {
	case len(rest) > 0:
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, rest)
	case c.PKIDir == "":
		return fmt.Errorf("%w: --pki-dir is required", errUsage)
	case m.Verb == "pki init" && len(c.Hosts) == 0:
		return fmt.Errorf("%w: --host is required: the hub's DNS names and IPs, e.g. --host 127.0.0.1,localhost", errUsage)
	case (m.Verb == "site add" || m.Verb == "site renew") && (c.ID == "" || c.Out == ""):
		return fmt.Errorf("%w: --id and --out are required", errUsage)
	case m.Verb == "site revoke" && (c.ID == "") == (c.Serial == ""):
		return fmt.Errorf("%w: give either --id (the whole site) or --serial (one certificate)", errUsage)
	case c.CAValidity <= 0 || c.HubValidity <= 0 || c.SiteValidity <= 0:
		return fmt.Errorf("%w: validities must be positive", errUsage)
	}
	return nil
}

// Run performs the verb and prints what was done and what to do next.
func (m *CloudPKIMain) Run(context.Context) error {
	c := m.Config
	if m.Verb == "pki init" {
		a, err := pki.Init(c.PKIDir, pki.InitOptions{Hosts: c.Hosts, CAValidity: time.Duration(c.CAValidity), HubValidity: time.Duration(c.HubValidity)})
		if err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "Created the hub PKI in %s (CA %q, valid until %s):\n", c.PKIDir, a.CACert().Subject.CommonName, a.CACert().NotAfter.Format(time.DateOnly))
		fmt.Fprintf(m.stdout, "  %-17s the CA certificate, copied to every site\n", pki.CACertFile)
		fmt.Fprintf(m.stdout, "  %-17s the CA private key (0600): needed only to add and renew sites; keep it offline if you can\n", pki.CAKeyFile)
		fmt.Fprintf(m.stdout, "  %-17s the hub's TLS server certificate and key (0600) for %s\n", pki.HubCertFile+", "+pki.HubKeyFile, strings.Join(c.Hosts, ", "))
		fmt.Fprintf(m.stdout, "\nNext: gatehouse cloud site add --pki-dir %s --id SITE_ID --name NAME --out DIR\n", c.PKIDir)
		return nil
	}
	a, err := pki.OpenAuthority(c.PKIDir, nil)
	if err != nil {
		return err
	}
	switch m.Verb {
	case "site add", "site renew":
		var b *pki.SiteBundle
		if m.Verb == "site add" {
			b, err = a.AddSite(c.ID, c.Name, time.Duration(c.SiteValidity))
		} else {
			b, err = a.RenewSite(c.ID, time.Duration(c.SiteValidity))
		}
		if err != nil {
			return err
		}
		if err := b.WriteDir(c.Out); err != nil {
			return fmt.Errorf("the certificate %s was issued but not written (revoke it with --serial %s): %w", b.Serial, b.Serial, err)
		}
		m.printBundle(b)
	case "site revoke":
		if c.Serial != "" {
			if err := a.RevokeSerial(c.Serial, c.Reason); err != nil {
				return err
			}
			fmt.Fprintf(m.stdout, "Revoked certificate %s. The hub refuses it from the next handshake and request.\n", c.Serial)
			return nil
		}
		serials, err := a.RevokeSite(c.ID, c.Reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "Revoked site %s: its token and %d certificate(s) %s. The hub refuses them from the next handshake and request.\n", c.ID, len(serials), strings.Join(serials, ", "))
	case "site list":
		certs, err := a.Certs()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(m.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tNAME\tSERIAL\tNOT AFTER\tSTATE")
		for _, sc := range certs {
			state := "valid"
			switch {
			case sc.Revoked:
				state = "revoked"
			case time.Now().After(sc.NotAfter):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sc.SiteID, sc.Name, sc.Serial, sc.NotAfter.Format(time.RFC3339), state)
		}
		return tw.Flush()
	}
	return nil
}

// printBundle tells the operator what was written and what to copy where.
func (m *CloudPKIMain) printBundle(b *pki.SiteBundle) {
	c := m.Config
	w := m.stdout
	fmt.Fprintf(w, "Site %s: certificate %s, valid until %s.\n", b.SiteID, b.Serial, b.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "Wrote to %s (each 0600):\n", c.Out)
	fmt.Fprintf(w, "  %-10s the hub CA certificate: the site trusts the hub by it\n", pki.CACertFile)
	fmt.Fprintf(w, "  %-10s the site's client certificate (gatehouse://site/%s)\n", pki.SiteCertFile, b.SiteID)
	fmt.Fprintf(w, "  %-10s the site's private key: secret\n", pki.SiteKeyFile)
	if b.Token != "" {
		fmt.Fprintf(w, "  %-10s the site's bearer token, the alternative to the certificate: secret (the hub keeps only its hash)\n", pki.SiteTokenFile)
	}
	dest := "/etc/gatehouse/hub-link"
	if b.Token != "" {
		fmt.Fprintf(w, "\nCopy the directory to every edge node of the site (any node may become the leader that runs the uplink), keeping the files 0600 and owned by the user gatehouse runs as, e.g.:\n")
		fmt.Fprintf(w, "  scp -rp %s NODE:%s\n", c.Out, dest)
	} else {
		fmt.Fprintf(w, "\nOn every edge node of the site, replace %s first and then %s in %s, each atomically (copy to a temporary name in the same directory, then mv), keeping %s and %s: the uplink uses the new certificate from its next connection.\n", pki.SiteKeyFile, pki.SiteCertFile, dest, pki.CACertFile, pki.SiteTokenFile)
		fmt.Fprintf(w, "Once every node has it, revoke the old certificate: gatehouse cloud site revoke --pki-dir %s --serial OLD_SERIAL (see \"site list\").\n", c.PKIDir)
	}
	snippet, _ := json.MarshalIndent(map[string]any{"uplink": map[string]string{"hub_url": c.HubURL, "tls_dir": dest}}, "", "  ")
	fmt.Fprintf(w, "\nEdge configuration (each node's --config; or --uplink-tls-dir; docs/security.md):\n%s\nThe hub serves sites with: gatehouse cloud --site-link :8443 --pki-dir %s\n", snippet, c.PKIDir)
}

// Close does nothing: the PKI verbs leave nothing running.
func (m *CloudPKIMain) Close() error { return nil }
