// Package people is the hub's cardholder API (gatehouse.people.v1):
// occupier users and access users, their cards and access groups, bulk CSV
// import and export through cloud/importer, and access logs. Every change
// is a hub write to the durable replica (cloud/hubstate), so it reaches
// the sites through sync; card numbers are claimed platform-wide in the
// same commit.
//
// Every method authenticates through cloud/auth: admin and security manage
// everyone, occupier_admin only its own occupier's people (checked in
// every method, not only in the console), host nothing here.
//
// Reads come from an in-memory index of the people, rebuilt from the
// replica when it changes (hubstate.Changed), and checked fresh against
// the replica's vector on every read, so a caller always reads its own
// writes. docs/cardholders.md describes the API.
package people

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1/peoplev1connect"
)

// Request size limits.
const (
	// MaxRequestBytes bounds every request but an import.
	MaxRequestBytes = 1 << 20
	// MaxImportBytes bounds an import request (the CSV file).
	MaxImportBytes = 64 << 20
	// maxCards and maxGroups bound one person's cards and groups in a
	// request; maxBatch the people of one group change.
	maxCards  = 16
	maxGroups = 256
	maxBatch  = 1000
)

// Entities reads the hub-only entities of the store (idempotency records).
type Entities interface {
	Get(ctx context.Context, kind, id string) (store.Entity, error)
}

// Events is an older seam for access events, no longer read: the access
// logs and unknown cards now come from the events the sites replicate to
// the hub (hubstate.State.QueryEvents, UnknownCards; see logs.go). An
// implementation returns the events matching q, newest first.
type Events interface {
	AccessEvents(ctx context.Context, q EventQuery) ([]access.Event, error)
}

// EventQuery selects access events; zero fields match everything.
type EventQuery struct {
	Site, Door, Holder access.ID
	From, Until        time.Time
	// Before, when non-zero, keeps events strictly older than the event
	// (Origin, Seq) at that time: the page cursor.
	Before time.Time
	// Limit bounds the events returned; 0 means no bound.
	Limit int
}

// Config configures a Service.
type Config struct {
	// State is the hub's durable replica; required.
	State *hubstate.State
	// Entities reads idempotency records; nil disables idempotency keys
	// (they are then ignored).
	Entities Entities
	// Events is not read any more (see Events); leave it nil.
	Events Events
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock of new IDs; nil means time.Now.
	Now func() time.Time
	// Occupiers are the occupiers known by name, for import files.
	Occupiers []Occupier
	// MaxImportRows bounds the rows of one import; 0 means 1,000,000.
	MaxImportRows int
}

// Service implements PeopleService and GroupService. Its methods are safe
// for concurrent use. Close stops its index refresher.
type Service struct {
	cfg   Config
	state *hubstate.State
	ids   *access.IDGen
	log   *slog.Logger
	now   func() time.Time
	index *index

	importMu sync.Mutex // one import at a time: each is large

	stop context.CancelFunc
	done chan struct{}
}

var (
	_ peoplev1connect.PeopleServiceHandler = (*Service)(nil)
	_ peoplev1connect.GroupServiceHandler  = groupService{}
)

// New returns a Service over cfg.State and starts refreshing its index on
// every change of the replica.
func New(cfg Config) (*Service, error) {
	if cfg.State == nil {
		return nil, errors.New("people: a hub state is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, state: cfg.State, ids: access.NewIDGen(nil), log: cfg.Logger.With("component", "people"), now: cfg.Now, done: make(chan struct{})}
	s.index = newIndex(cfg.State)
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.refresh(ctx)
	return s, nil
}

// refresh rebuilds the index after every change of the replica, so reads
// seldom wait for a rebuild.
func (s *Service) refresh(ctx context.Context) {
	defer close(s.done)
	for {
		ch := s.state.Changed()
		s.index.current()
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if s.state.Closed() {
				return
			}
		}
	}
}

// Close stops the index refresher. It is idempotent.
func (s *Service) Close() error {
	s.stop()
	<-s.done
	return nil
}

// Handlers returns the Connect paths and handlers of PeopleService and
// GroupService, every call authenticated by keys, and each request body
// bounded: MaxImportBytes for ImportPeople, MaxRequestBytes otherwise.
func (s *Service) Handlers(keys *auth.Keyring) map[string]http.Handler {
	opts := []connect.HandlerOption{connect.WithInterceptors(keys.Interceptor()), connect.WithReadMaxBytes(MaxImportBytes)}
	pp, ph := peoplev1connect.NewPeopleServiceHandler(s, opts...)
	gp, gh := peoplev1connect.NewGroupServiceHandler(groupService{s}, append(opts[:1:1], connect.WithReadMaxBytes(MaxRequestBytes))...)
	return map[string]http.Handler{pp: limitBody(ph), gp: limitBody(gh)}
}

// limitBody bounds request bodies: an import's to MaxImportBytes, the
// others' to MaxRequestBytes.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxRequestBytes)
		if r.URL.Path == peoplev1connect.PeopleServiceImportPeopleProcedure {
			limit = MaxImportBytes
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// Roles that may manage cardholders.
var managers = []auth.Role{auth.Admin, auth.Security, auth.OccupierAdmin}

// connectErr maps a domain error to a Connect error (STYLE.md: one table
// per transport). A card number taken is AlreadyExists.
func connectErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, hubstate.ErrCardTaken) {
		return connect.NewError(connect.CodeAlreadyExists, err)
	}
	var rep *importer.Report
	if errors.As(err, &rep) {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	switch access.ErrorCode(err) {
	case access.Invalid:
		return connect.NewError(connect.CodeInvalidArgument, err)
	case access.NotFound:
		return connect.NewError(connect.CodeNotFound, err)
	case access.Conflict:
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case access.Denied:
		return connect.NewError(connect.CodePermissionDenied, err)
	case access.Unavailable:
		return connect.NewError(connect.CodeUnavailable, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func notFound(format string, args ...any) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}

// newID returns a fresh ID.
func (s *Service) newID() (access.ID, error) { return s.ids.New(s.now()) }

// parseID parses a required ID argument.
func parseID(what, v string) (access.ID, error) {
	id, err := access.ParseID(v)
	if err != nil || string(id) != v {
		return "", invalid("%s %q is not an ID", what, v)
	}
	return id, nil
}
