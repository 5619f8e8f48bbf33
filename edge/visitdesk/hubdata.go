package visitdesk

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Files the desk keeps in Config.Dir, each the hub's last answer as it came
// (JSON), written atomically (temporary file, fsync, rename).
const (
	// KeysFile holds the hub's public token keys (GET /visits/token-keys).
	KeysFile = "token-keys.json"
	// WatchlistFile holds the site's watchlist (GET /visits/site-watchlist).
	WatchlistFile = "site-watchlist.json"
	// TypesFile holds the site's visitor types (GET
	// /visits/site-visitor-types).
	TypesFile = "site-visitor-types.json"
	// maxHubBody bounds a hub answer the desk reads.
	maxHubBody = 4 << 20
)

// keysDoc is the JSON of GET /visits/token-keys (docs/visitors.md §4).
type keysDoc struct {
	Keys []struct {
		ID      string `json:"key_id"`
		Public  string `json:"public_key"`
		Created string `json:"created"`
		Retired string `json:"retired,omitempty"`
		Current bool   `json:"current"`
	} `json:"keys"`
}

// keyring builds a keyring from the document; it fails on a malformed key
// or time, so that a bad answer never replaces a good file.
func (d keysDoc) keyring() (*access.TokenKeyring, int, error) {
	r := &access.TokenKeyring{}
	for i, k := range d.Keys {
		pub, err := hex.DecodeString(k.Public)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, 0, access.Errorf(access.Invalid, "token keys: key %d: public_key is not %d bytes of hex", i, ed25519.PublicKeySize)
		}
		tk := access.TokenKey{Public: ed25519.PublicKey(pub)}
		if k.Retired != "" {
			if tk.Retired, err = time.Parse(time.RFC3339, k.Retired); err != nil {
				return nil, 0, access.Errorf(access.Invalid, "token keys: key %d: retired: %v", i, err)
			}
		}
		if k.ID != "" && k.ID != access.KeyIDOf(tk.Public).String() {
			return nil, 0, access.Errorf(access.Invalid, "token keys: key %d: key_id %q does not match its public key", i, k.ID)
		}
		if err := r.Add(tk); err != nil {
			return nil, 0, err
		}
	}
	return r, len(d.Keys), nil
}

// watchDoc is the JSON of GET /visits/site-watchlist.
type watchDoc struct {
	Site    string `json:"site"`
	Version int64  `json:"version"`
	Entries []struct {
		ID             string `json:"id"`
		GivenNames     string `json:"given_names"`
		Surname        string `json:"surname"`
		BirthDate      string `json:"birth_date"`
		DocumentNumber string `json:"document_number"`
		Action         string `json:"action"`
		Reason         string `json:"reason"`
	} `json:"entries"`
}

// entries converts the document, refusing it whole on a malformed entry or
// another site's list.
func (d watchDoc) entries(site access.ID) ([]access.WatchEntry, error) {
	if d.Site != string(site) {
		return nil, access.Errorf(access.Invalid, "watchlist: for site %q, not %s", d.Site, site)
	}
	out := make([]access.WatchEntry, 0, len(d.Entries))
	for i, e := range d.Entries {
		w := access.WatchEntry{ID: access.ID(e.ID), GivenNames: e.GivenNames, Surname: e.Surname,
			DocumentNumber: e.DocumentNumber, Reason: e.Reason}
		switch e.Action {
		case "hold":
			w.Action = access.WatchHold
		case "deny":
			w.Action = access.WatchDeny
		default:
			return nil, access.Errorf(access.Invalid, "watchlist: entry %d: action %q: want hold or deny", i, e.Action)
		}
		if e.BirthDate != "" {
			t, err := time.Parse(time.DateOnly, e.BirthDate)
			if err != nil {
				return nil, access.Errorf(access.Invalid, "watchlist: entry %d: birth_date %q: want YYYY-MM-DD", i, e.BirthDate)
			}
			w.BirthDate = t
		}
		if err := w.Validate(); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// typesDoc is the JSON of GET /visits/site-visitor-types.
type typesDoc struct {
	Site    string `json:"site"`
	Version int64  `json:"version"`
	Types   []struct {
		ID                string   `json:"id"`
		Name              string   `json:"name"`
		RequiredDocuments []string `json:"required_documents"`
	} `json:"visitor_types"`
}

// required returns, per visitor type, the documents it requires,
// refusing the document whole for another site or a malformed ID.
func (d typesDoc) required(site access.ID) (map[access.ID][]string, error) {
	if d.Site != string(site) {
		return nil, access.Errorf(access.Invalid, "visitor types: for site %q, not %s", d.Site, site)
	}
	out := make(map[access.ID][]string, len(d.Types))
	for i, t := range d.Types {
		if _, err := access.ParseID(t.ID); err != nil {
			return nil, access.Errorf(access.Invalid, "visitor types: type %d: %v", i, err)
		}
		out[access.ID(t.ID)] = t.RequiredDocuments
	}
	return out, nil
}

// hubData is what the desk holds from the hub: the keyring and the
// watchlist, with when each was last loaded.
type hubData struct {
	keys      *access.TokenKeyring
	nkeys     int
	keysAt    time.Time
	watch     []access.WatchEntry
	watchVer  int64
	watchAt   time.Time
	watchSeen bool // a watchlist was ever loaded
	// required holds the documents each visitor type requires (nil
	// until visitor types were loaded).
	required map[access.ID][]string
}

// loadFiles reads the kept files, if any. A missing file is not an error.
func (d *Desk) loadFiles() {
	if b, err := os.ReadFile(filepath.Join(d.cfg.Dir, KeysFile)); err == nil {
		if err := d.takeKeys(b, false); err != nil {
			d.log.Error("kept token keys unreadable; waiting for the hub", "file", KeysFile, "err", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.cfg.Dir, WatchlistFile)); err == nil {
		if err := d.takeWatchlist(b, false); err != nil {
			d.log.Error("kept watchlist unreadable; waiting for the hub", "file", WatchlistFile, "err", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.cfg.Dir, TypesFile)); err == nil {
		if err := d.takeTypes(b, false); err != nil {
			d.log.Error("kept visitor types unreadable; waiting for the hub", "file", TypesFile, "err", err)
		}
	}
}

// takeTypes is takeKeys for the visitor types.
func (d *Desk) takeTypes(b []byte, keep bool) error {
	var doc typesDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return access.Errorf(access.Invalid, "visitor types: %v", err)
	}
	req, err := doc.required(d.cfg.SiteID)
	if err != nil {
		return err
	}
	if keep {
		if err := writeFile(filepath.Join(d.cfg.Dir, TypesFile), b); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.hub.required = req
	d.mu.Unlock()
	return nil
}

// takeKeys parses a token-keys document and, when it is good, uses it and
// (with keep) writes it to disk.
func (d *Desk) takeKeys(b []byte, keep bool) error {
	var doc keysDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return access.Errorf(access.Invalid, "token keys: %v", err)
	}
	r, n, err := doc.keyring()
	if err != nil {
		return err
	}
	if keep {
		if err := writeFile(filepath.Join(d.cfg.Dir, KeysFile), b); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.hub.keys, d.hub.nkeys, d.hub.keysAt = r, n, d.cfg.Now()
	d.mu.Unlock()
	return nil
}

// takeWatchlist is takeKeys for the watchlist.
func (d *Desk) takeWatchlist(b []byte, keep bool) error {
	var doc watchDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return access.Errorf(access.Invalid, "watchlist: %v", err)
	}
	es, err := doc.entries(d.cfg.SiteID)
	if err != nil {
		return err
	}
	if keep {
		if err := writeFile(filepath.Join(d.cfg.Dir, WatchlistFile), b); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.hub.watch, d.hub.watchVer, d.hub.watchAt, d.hub.watchSeen = es, doc.Version, d.cfg.Now(), true
	d.mu.Unlock()
	return nil
}

// writeFile writes b to path atomically (mode 0600).
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return access.Errorf(access.Unavailable, "visit desk: %v", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return access.Errorf(access.Unavailable, "visit desk: %v", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return access.Errorf(access.Unavailable, "visit desk: write %s: %v", filepath.Base(path), err)
	}
	return nil
}

// fetch GETs path from the hub (with the site's token when auth) and
// returns the body of a 200 answer.
func (d *Desk) fetch(ctx context.Context, path string, auth bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(d.cfg.HubURL, "/")+path, nil)
	if err != nil {
		return nil, access.Errorf(access.Invalid, "visit desk: %v", err)
	}
	if auth && d.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.Token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, access.Errorf(access.Unavailable, "visit desk: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHubBody+1))
	switch {
	case err != nil:
		return nil, access.Errorf(access.Unavailable, "visit desk: GET %s: %v", path, err)
	case resp.StatusCode != http.StatusOK:
		return nil, access.Errorf(access.Unavailable, "visit desk: GET %s: %s", path, resp.Status)
	case len(b) > maxHubBody:
		return nil, access.Errorf(access.Invalid, "visit desk: GET %s: answer larger than %d bytes", path, maxHubBody)
	}
	return b, nil
}

// Refresh fetches the token keys, the watchlist and the visitor types from
// the hub now, and keeps each good answer on disk. It returns the first error (a hub that
// cannot be reached is Unavailable; a malformed answer Invalid and is not
// kept); what was held before stays in use. Without a hub URL it does
// nothing. It is safe for concurrent use.
func (d *Desk) Refresh(ctx context.Context) error {
	if d.cfg.HubURL == "" {
		return nil
	}
	var errs []error
	if b, err := d.fetch(ctx, "/visits/token-keys", false); err != nil {
		errs = append(errs, err)
	} else if err := d.takeKeys(b, true); err != nil {
		errs = append(errs, err)
	}
	if b, err := d.fetch(ctx, "/visits/site-watchlist", true); err != nil {
		errs = append(errs, err)
	} else if err := d.takeWatchlist(b, true); err != nil {
		errs = append(errs, err)
	}
	if b, err := d.fetch(ctx, "/visits/site-visitor-types", true); err != nil {
		errs = append(errs, err)
	} else if err := d.takeTypes(b, true); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("visit desk: refresh: %w", errs[0])
	}
	return nil
}

// refreshLoop refreshes at once and then every cfg.Refresh until Close.
func (d *Desk) refreshLoop() {
	defer d.wg.Done()
	for {
		if err := d.Refresh(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Warn("hub data not refreshed; using what is kept", "err", err)
		}
		t := time.NewTimer(d.cfg.Refresh)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return
		}
	}
}
