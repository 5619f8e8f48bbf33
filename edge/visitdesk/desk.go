// Package visitdesk is the site's visitor desk: it answers the site's
// kiosks and drives its card dispensers over MQTT (docs/protocol-mqtt.md
// §10–§12), checks guests in and out through Raft, and ends visits whose
// window is over. Everything it needs is at the site, so it works with the
// WAN down: the hub's public token keys and the site's watchlist are
// fetched periodically and kept on disk.
//
// # Check-in
//
//  1. qr_scanned: the token is verified offline (access.TokenKeyring), then
//     the visit is looked up in the site's replica: of this site, the token's
//     guest is the visit's visitor, invited or pre-registered (a requested
//     visit is held for security), not final, and now within the window
//     (from minus Config.EarlyArrival, until).
//  2. id_scanned: the MRZ is parsed and checked (access.ParseMRZ), checked
//     against the watchlist (a hit refuses with a neutral message and is
//     recorded as a "watchlist_hit" access event), then verified against
//     the guest's name and for expiry (MRZ.Verify).
//  3. check_in: a free number from the site's visitor card range is encoded
//     by the kiosk's dispenser; only once the dispenser reports it encoded
//     is CheckInVisit committed (visit checked_in and the card bound to its
//     guest, atomically); then the card is dispensed. A dispenser fault
//     before the commit (empty, jam, encode_failed, no answer) changes
//     nothing: the encoded card, if any, is captured and the kiosk asks the
//     guest to see reception. A fault at dispense, after the commit, leaves
//     the visit checked in and suspends its card (it may be stuck in the
//     machine); reception checks the guest out and in again.
//
// Repeats of a kiosk request ID are answered with the first answer. The
// Raft commands carry request IDs derived from the kiosk's, so a repeat
// that reaches another node or a restarted one gets the outcome recorded
// in the replicated log, never a second card.
//
// # Checkout
//
// A kiosk check_out (by visit or card), a card inserted into a dispenser's
// return slot (checked out, then captured; a card that is not a visitor
// card is handed back), the site API and the sweeper all commit
// CheckOutVisit: the visit moves to checked_out (expired for a guest who
// never came) and its cards are unbound, so their numbers return to the
// pool.
//
// Which node serves which device follows edge/doors: with the embedded
// broker each node serves the kiosks and dispensers connected to it; the
// sweeper runs on the Raft leader only (Config.Leader).
package visitdesk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Defaults of Config.
const (
	DefaultEarlyArrival     = 15 * time.Minute
	DefaultRefresh          = 5 * time.Minute
	DefaultSweep            = 30 * time.Second
	DefaultDispenserTimeout = 10 * time.Second
	DefaultFetchTimeout     = 10 * time.Second
	// sessionTTL is how long a verified invitation and document stay good
	// for the check-in that follows.
	sessionTTL = 15 * time.Minute
	// rememberedAnswers bounds the kiosk answers kept for repeats.
	rememberedAnswers = 4096
)

// Site is what the desk needs from its edge node; its methods must be safe
// for concurrent use.
type Site interface {
	// View calls fn with the node's applied state; fn must not keep it.
	View(fn func(st *access.State))
	// Propose commits cmd through Raft and returns its result once this
	// node has applied it. A domain failure is in the result; the error is
	// for a command that could not be committed.
	Propose(ctx context.Context, cmd *raftv1.Command) (*edgev1.CommandResult, error)
	// Publish sends payload to device d's cmd topic (QoS 1).
	Publish(ctx context.Context, d mqttproto.Device, payload []byte) error
}

// Config configures a Desk.
type Config struct {
	// SiteID is the site; NodeID names this node in request IDs.
	SiteID access.ID
	NodeID string
	// Dir keeps the hub's token keys and watchlist (created if missing).
	Dir string
	// HubURL is the hub's base URL; empty: nothing is fetched (only what
	// Dir holds is used). Token is the site's bearer token at the hub (for
	// the watchlist), TLS the client TLS configuration (edge/uplink.LoadTLS).
	HubURL string
	Token  string
	TLS    *tls.Config
	// CardFrom and CardTo bound the site's visitor card range (inclusive).
	CardFrom, CardTo access.CardNumber
	// EarlyArrival is how long before a visit's window a guest may check
	// in (DefaultEarlyArrival when zero; negative: not at all).
	EarlyArrival time.Duration
	// Dispensers pairs kiosks with dispensers (kiosk device ID to
	// dispenser device ID). A kiosk not listed uses the online dispenser
	// of the lowest ID this node serves.
	Dispensers map[access.ID]access.ID
	// Refresh is how often the hub data is fetched (DefaultRefresh).
	Refresh time.Duration
	// Sweep is how often visits past their window are ended
	// (DefaultSweep).
	Sweep time.Duration
	// DispenserTimeout bounds the wait for a dispenser's answer
	// (DefaultDispenserTimeout).
	DispenserTimeout time.Duration
	// FetchTimeout bounds one request to the hub (DefaultFetchTimeout).
	FetchTimeout time.Duration
	// Leader reports whether this node leads the site (the sweeper runs
	// only then); nil: always.
	Leader func() bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// ParseCardRange parses "FROM-TO" (decimal card numbers, FROM <= TO).
func ParseCardRange(s string) (from, to access.CardNumber, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if ok {
		from, err = access.ParseCardNumber(strings.TrimSpace(a))
		if err == nil {
			to, err = access.ParseCardNumber(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || to < from {
		return 0, 0, access.Errorf(access.Invalid, "card range %q: want FROM-TO, two card numbers with FROM <= TO", s)
	}
	return from, to, nil
}

func (c Config) withDefaults() Config {
	if c.EarlyArrival == 0 {
		c.EarlyArrival = DefaultEarlyArrival
	} else if c.EarlyArrival < 0 {
		c.EarlyArrival = 0
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Sweep <= 0 {
		c.Sweep = DefaultSweep
	}
	if c.DispenserTimeout <= 0 {
		c.DispenserTimeout = DefaultDispenserTimeout
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.SiteID == "":
		return access.Errorf(access.Invalid, "visit desk: site is required")
	case c.Dir == "":
		return access.Errorf(access.Invalid, "visit desk: a directory for the hub's keys is required")
	case c.CardFrom == 0 || c.CardTo < c.CardFrom:
		return access.Errorf(access.Invalid, "visit desk: card_range is required (FROM-TO)")
	case c.HubURL != "" && !strings.HasPrefix(c.HubURL, "http://") && !strings.HasPrefix(c.HubURL, "https://"):
		return access.Errorf(access.Invalid, "visit desk: hub URL %q: want http:// or https://", c.HubURL)
	}
	return nil
}

// Status is what the desk reports for the node's status.
type Status struct {
	// KiosksOnline and DispensersOnline count the devices this node
	// serves whose latest state is online.
	KiosksOnline, DispensersOnline int
	// PoolSize and PoolFree are the visitor card range's size and the
	// numbers in it not bound to anyone.
	PoolSize, PoolFree uint64
	// TokenKeys is the number of hub keys held (0: invitations cannot be
	// checked); KeysAt when they were loaded.
	TokenKeys int
	KeysAt    time.Time
	// Watchlist reports that a watchlist is held, with its version and
	// entries.
	Watchlist        bool
	WatchlistVersion int64
	WatchlistEntries int
	// Answered counts kiosk requests answered; Repeats the repeated
	// request IDs answered again with their first answer.
	Answered, Repeats uint64
}

// session is what a kiosk established for one visit so far.
type session struct {
	visit   access.ID
	guest   access.ID
	tokenAt time.Time
	docAt   time.Time // zero until the document was verified
}

// device is a kiosk or dispenser this node heard from.
type device struct {
	dev    access.Device
	online bool
}

// Desk is the site's visitor desk on one node. Create it with New, start it
// with Open, stop it with Close; its methods are safe for concurrent use.
type Desk struct {
	cfg    Config
	site   Site
	log    *slog.Logger
	client *http.Client
	prefix string

	mu       sync.Mutex
	hub      hubData
	devices  map[access.ID]*device
	sessions map[access.ID]*session // by kiosk
	answers  map[string]mqttproto.KioskCmd
	order    []string
	busy     map[string]bool // kiosk requests in progress
	reserved map[access.CardNumber]bool
	waiters  map[string]chan mqttproto.DispenserEvent
	n        uint64
	answered uint64
	repeats  uint64
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a desk; it does nothing until Open.
func New(cfg Config, site Site, log *slog.Logger) (*Desk, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	ctx, cancel := context.WithCancel(context.Background())
	d := &Desk{cfg: cfg, site: site, log: log.With("component", "visitdesk"),
		client:  &http.Client{Transport: tr},
		prefix:  cfg.NodeID + "." + strconv.FormatInt(cfg.Now().UnixMilli(), 36),
		devices: map[access.ID]*device{}, sessions: map[access.ID]*session{},
		answers: map[string]mqttproto.KioskCmd{}, busy: map[string]bool{},
		reserved: map[access.CardNumber]bool{}, waiters: map[string]chan mqttproto.DispenserEvent{},
		ctx: ctx, cancel: cancel}
	return d, nil
}

// Open loads the kept hub data and starts the refresh and sweep loops.
func (d *Desk) Open() {
	d.loadFiles()
	d.wg.Add(2)
	go d.refreshLoop()
	go d.sweepLoop()
}

// Close stops the loops and the requests in progress, and waits for them.
// It is idempotent.
func (d *Desk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	d.client.CloseIdleConnections()
	return nil
}

// goRun runs fn in a tracked goroutine unless the desk is closed.
func (d *Desk) goRun(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn()
	}()
}

// reqID returns a fresh command request ID with kind.
func (d *Desk) reqID(kind string) string {
	d.mu.Lock()
	d.n++
	n := d.n
	d.mu.Unlock()
	return kind + "." + d.prefix + "." + strconv.FormatUint(n, 36)
}

// Status returns the desk's status.
func (d *Desk) Status() Status {
	d.mu.Lock()
	s := Status{TokenKeys: d.hub.nkeys, KeysAt: d.hub.keysAt, Watchlist: d.hub.watchSeen,
		WatchlistVersion: d.hub.watchVer, WatchlistEntries: len(d.hub.watch), Answered: d.answered, Repeats: d.repeats}
	for _, dv := range d.devices {
		if !dv.online {
			continue
		}
		switch dv.dev.Kind {
		case access.DeviceKiosk:
			s.KiosksOnline++
		case access.DeviceDispenser:
			s.DispensersOnline++
		}
	}
	d.mu.Unlock()
	s.PoolSize = uint64(d.cfg.CardTo-d.cfg.CardFrom) + 1
	used := uint64(0)
	d.site.View(func(st *access.State) {
		for c := range st.Cards() {
			if c.Number >= d.cfg.CardFrom && c.Number <= d.cfg.CardTo && c.Status != access.CardReturned {
				used++
			}
		}
	})
	s.PoolFree = s.PoolSize - min(used, s.PoolSize)
	return s
}

// Detail returns the status as one line for the node's status detail.
func (s Status) Detail() string {
	keys := strconv.Itoa(s.TokenKeys) + " token keys"
	if s.TokenKeys == 0 {
		keys = "no token keys (invitations cannot be checked)"
	}
	wl := "no watchlist"
	if s.Watchlist {
		wl = fmt.Sprintf("watchlist v%d (%d entries)", s.WatchlistVersion, s.WatchlistEntries)
	}
	return fmt.Sprintf("visit desk: %d kiosks and %d dispensers online, %d of %d visitor cards free, %s, %s",
		s.KiosksOnline, s.DispensersOnline, s.PoolFree, s.PoolSize, keys, wl)
}

// DeviceState takes a kiosk's or dispenser's state (mqttgw.VisitorDevices).
func (d *Desk) DeviceState(dev access.Device, st mqttproto.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dv := d.devices[dev.ID]
	if dv == nil {
		dv = &device{}
		d.devices[dev.ID] = dv
	}
	dv.dev, dv.online = dev, st.Online
}

// seen marks dev online (it just sent an event).
func (d *Desk) seen(dev access.Device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dv := d.devices[dev.ID]
	if dv == nil {
		dv = &device{}
		d.devices[dev.ID] = dv
	}
	dv.dev, dv.online = dev, true
}

// dispenserFor returns the dispenser that serves kiosk.
func (d *Desk) dispenserFor(kiosk access.ID) (access.ID, bool) {
	if id, ok := d.cfg.Dispensers[kiosk]; ok {
		return id, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []access.ID
	for id, dv := range d.devices {
		if dv.online && dv.dev.Kind == access.DeviceDispenser {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", false
	}
	return slices.Min(ids), true
}

// pickCard returns a free number of the visitor card range, reserved
// until release is called: not bound to a card in the applied state (a
// returned card is free) and not reserved by a check-in in progress. It
// starts at a random point of the range, so that desks on several nodes
// rarely pick the same number (CheckInVisit refuses a number taken).
func (d *Desk) pickCard() (access.CardNumber, func(), error) {
	size := uint64(d.cfg.CardTo-d.cfg.CardFrom) + 1
	start := rand.Uint64N(size)
	var taken map[access.CardNumber]bool
	d.site.View(func(st *access.State) {
		taken = map[access.CardNumber]bool{}
		for c := range st.Cards() {
			if c.Number >= d.cfg.CardFrom && c.Number <= d.cfg.CardTo && c.Status != access.CardReturned {
				taken[c.Number] = true
			}
		}
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := uint64(0); i < size; i++ {
		n := d.cfg.CardFrom + access.CardNumber((start+i)%size)
		if !taken[n] && !d.reserved[n] {
			d.reserved[n] = true
			return n, func() {
				d.mu.Lock()
				delete(d.reserved, n)
				d.mu.Unlock()
			}, nil
		}
	}
	return 0, nil, access.Errorf(access.Unavailable, "visit desk: no free number in the visitor card range %s-%s", d.cfg.CardFrom, d.cfg.CardTo)
}

// propose commits cmd and returns the domain error of its result, if any.
// A command with a request ID whose outcome is unknown (no quorum, a
// leader change) is retried with the same request ID until ctx ends: the
// log answers a repeat with the first result, so a check-in committed
// just before its leader failed is found, never made twice.
func (d *Desk) propose(ctx context.Context, cmd *raftv1.Command) (*edgev1.CommandResult, error) {
	cmd.Actor = "edge/visitdesk"
	backoff := 50 * time.Millisecond
	for {
		res, err := d.site.Propose(ctx, cmd)
		if err == nil {
			if res.GetErrorCode() != "" {
				return res, &access.Error{Code: access.Code(res.GetErrorCode()), Op: "visit desk", Msg: res.GetError()}
			}
			return res, nil
		}
		if ctx.Err() != nil || cmd.GetRequestId() == "" {
			return nil, access.Errorf(access.Unavailable, "visit desk: %w", err)
		}
		d.log.Warn("proposal not committed; retrying with the same request id", "request_id", cmd.GetRequestId(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// requestKey returns a Raft request ID for a device request, at most
// 128 bytes.
func requestKey(kind string, dev access.ID, req string) string {
	k := kind + "/" + string(dev) + "/" + req
	if len(k) > 128 {
		k = k[:128]
	}
	return k
}

// recordWatchHit records a watchlist hit at a kiosk in the site's event
// log (type "watchlist_hit", holder the visit, detail the entry and
// action), for security.
func (d *Desk) recordWatchHit(ctx context.Context, kiosk access.ID, visit access.ID, h access.WatchHit, at time.Time) {
	ev := &accessv1.AccessEvent{AtMs: at.UnixMilli(), Type: "watchlist_hit", DeviceId: string(kiosk), HolderId: string(visit),
		Detail: fmt.Sprintf("watchlist entry %s (%s, certain=%t) matched the document at check-in", h.Entry.ID, h.Entry.Action, h.Certain)}
	_, err := d.propose(ctx, &raftv1.Command{Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: []*accessv1.AccessEvent{ev}}}})
	if err != nil {
		d.log.Error("watchlist hit not recorded in the event log", "visit", string(visit), "entry", string(h.Entry.ID), "err", err)
	}
}

// errCode returns the access code of err ("" when none).
func errCode(err error) access.Code {
	var ae *access.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return access.ErrorCode(err)
}
