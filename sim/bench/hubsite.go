package bench

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/people"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/cloud/store/badgerstore"
	"github.com/gatehouse/gatehouse/cloud/syncserver"
	"github.com/gatehouse/gatehouse/sim/partition"
)

// hubSite is the harness of the benchmarks that run a hub and a site
// together (revoke, catchup): a hub (Badger store, SyncService over
// loopback HTTP/2) and a 3-node site with the product's default timings,
// the site's uplink through a toxiproxy WAN without toxics, all under a
// fresh directory and logging errors only.
type hubSite struct {
	siteID string
	hub    *partition.Hub
	wan    *partition.WAN
	site   *partition.Site

	silence func()   // called first by Close: a site shutting down logs nothing worth reading
	closers []func() // then run in reverse by Close
}

// openHubSite opens a hubSite for the benchmark name, the site presenting
// token to the hub. On error it has closed what it opened.
func openHubSite(ctx context.Context, opt Options, name, token string) (_ *hubSite, err error) {
	hs := &hubSite{siteID: partition.NewID(), silence: func() {}}
	defer func() {
		if err != nil {
			hs.Close()
		}
	}()
	dir, cleanup, err := benchDir(opt.Dir, name)
	if err != nil {
		return nil, err
	}
	hs.onClose(cleanup) // last: the files
	log, silence := quietLog(opt)
	hs.silence = silence
	if hs.hub, err = partition.OpenHub(ctx, partition.HubConfig{Dir: filepath.Join(dir, "hub"),
		Sites: []syncserver.SiteToken{{Site: hs.siteID, Token: token}}, Logger: log}); err != nil {
		return nil, err
	}
	hs.onClose(hs.hub.Close)
	if hs.wan, err = partition.NewWAN(hs.hub.Addr()); err != nil {
		return nil, err
	}
	hs.onClose(hs.wan.Close)
	if hs.site, err = partition.OpenSite(ctx, partition.SiteConfig{ID: hs.siteID, Token: token, HubURL: hs.wan.URL(),
		Dir: filepath.Join(dir, "site"), Logger: log, DefaultTimings: true}); err != nil {
		return nil, err
	}
	hs.onClose(hs.site.Close)
	return hs, nil
}

// onClose makes Close run f, before what was registered earlier.
func (hs *hubSite) onClose(f func()) { hs.closers = append(hs.closers, f) }

// Close silences the log and closes everything, the latest opened first.
func (hs *hubSite) Close() {
	hs.silence()
	for i := len(hs.closers) - 1; i >= 0; i-- {
		hs.closers[i]()
	}
	hs.closers = nil
}

// quietLog is opt.Log for the hub and site under test: errors only (a
// forming site logs its elections as warnings). Calling the returned
// function silences it (a site shutting down logs nothing worth reading).
func quietLog(opt Options) (*slog.Logger, func()) {
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelError)
	return slog.New(doorLevelFilter{h: opt.Log.Handler(), min: lvl}), func() { lvl.Set(slog.LevelError + 100) }
}

// openHubStore opens a hub's Badger store in a fresh directory under
// opt.Dir named after the benchmark, for the benchmarks of the hub's own
// APIs (logs, people); close closes it and removes the directory.
func openHubStore(ctx context.Context, opt Options, name string) (_ store.Store, close func(), err error) {
	dir, err := os.MkdirTemp(opt.Dir, "bench-"+name+"-*")
	if err != nil {
		return nil, nil, err
	}
	st, err := badgerstore.Open(ctx, dir, store.Options{Kinds: hubstate.Kinds, Logger: opt.Log})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return st, func() { _ = st.Close(); _ = os.RemoveAll(dir) }, nil
}

// peopleAPI is the hub's cardholder API (cloud/people) served over
// loopback HTTP, and an admin key's client option to call it with.
type peopleAPI struct {
	svc  *people.Service
	srv  *http.Server
	url  string
	auth connect.ClientOption
}

// servePeopleAPI starts the cardholder API of cfg (its logger discarded)
// on a loopback port.
func servePeopleAPI(cfg people.Config) (_ *peopleAPI, err error) {
	cfg.Logger = slog.New(slog.DiscardHandler)
	svc, err := people.New(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = svc.Close()
		}
	}()
	key, err := auth.NewKey()
	if err != nil {
		return nil, err
	}
	kr, err := auth.NewKeyring([]auth.Key{{ID: "bench", SHA256: auth.HashKey(key), Role: auth.Admin}})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for path, h := range svc.Handlers(kr) {
		mux.Handle(path, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return &peopleAPI{svc: svc, srv: srv, url: "http://" + ln.Addr().String(), auth: connect.WithInterceptors(auth.Bearer(key))}, nil
}

// Close stops the server, then the service.
func (a *peopleAPI) Close() {
	_ = a.srv.Close()
	_ = a.svc.Close()
}
