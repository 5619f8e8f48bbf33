package visits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// The hub-only records the service keeps as store entities, next to the
// replicated visit, person and grants (which hubstate holds as deltas).
// Each is JSON; versions count writes from 1, and every update is
// conditional on the version read.
const (
	// KindVisitRecord: per visit (ID = visit ID), what only the hub needs:
	// the names as invited, the watchlist hold, documents, NDA, emails.
	KindVisitRecord = "visit_record"
	// KindIdempotency: per idempotency key (ID = hex SHA-256 of the key),
	// the request's fingerprint and the visits it made.
	KindIdempotency = "visit_idempotency"
	// KindVisitorType: the visitor types (ID = type ID).
	KindVisitorType = "visitor_type"
	// KindWatch: the watchlist (ID = entry ID).
	KindWatch = "watch_entry"
	// KindDocument: an uploaded document (ID = document ID): a JSON header
	// line, then the file's bytes.
	KindDocument = "visit_document"
	// KindOutbox: an email to send (ID = outbox ID, a ULID, so IDs sort by
	// creation).
	KindOutbox = "outbox"
	// KindArrival: per visit (ID = visit ID), the mark that its arrival
	// was announced to the host (arrival.go). It is only ever created,
	// conditionally, so each visit gets one arrival email at most, whatever
	// the number of hub processes and restarts.
	KindArrival = "visit_arrival"
)

// Kinds are the entity kinds the hub's store must be opened with for the
// service, besides hubstate.Kinds.
var Kinds = []string{KindVisitRecord, KindIdempotency, KindVisitorType, KindWatch, KindDocument, KindOutbox, KindArrival}

// visitRecord is the hub-only part of a visit.
type visitRecord struct {
	Given      string      `json:"given"`
	Family     string      `json:"family"`
	Email      string      `json:"email"`
	Held       bool        `json:"held,omitempty"`
	HoldReason string      `json:"hold_reason,omitempty"`
	Documents  []docRef    `json:"documents,omitempty"`
	NDAAt      time.Time   `json:"nda_at,omitzero"`
	Emails     []string    `json:"emails,omitempty"` // outbox IDs
	Created    time.Time   `json:"created"`
	Grants     []access.ID `json:"grants,omitempty"` // grant IDs the hub made
}

// docRef names an uploaded document.
type docRef struct {
	Name        string    `json:"name"` // as the visitor type lists it
	ID          string    `json:"id"`   // KindDocument entity
	ContentType string    `json:"content_type"`
	Size        int       `json:"size"`
	At          time.Time `json:"at"`
}

// idemRecord is what an idempotency key made.
type idemRecord struct {
	Fingerprint string      `json:"fingerprint"`
	Visits      []access.ID `json:"visits"`
	Pickup      []string    `json:"pickup_urls"`
}

// visitorType is a visitor type as stored.
type visitorType struct {
	ID                access.ID     `json:"id"`
	Name              string        `json:"name"`
	AllowedGroups     []access.ID   `json:"allowed_groups"`
	RequiredDocuments []string      `json:"required_documents"`
	MaxDuration       time.Duration `json:"max_duration"`
	EscortRequired    bool          `json:"escort_required"`
	Deleted           bool          `json:"deleted,omitempty"`
}

func (vt visitorType) domain() access.VisitorType {
	return access.VisitorType{ID: vt.ID, Name: vt.Name, AllowedGroups: vt.AllowedGroups,
		RequiredDocuments: vt.RequiredDocuments, MaxDuration: vt.MaxDuration, EscortRequired: vt.EscortRequired}
}

// watchEntry is a watchlist entry as stored.
type watchEntry struct {
	access.WatchEntry
	Deleted bool `json:"deleted,omitempty"`
}

// entities is what the service needs of the store: reading entities and
// committing puts outside a hubstate write.
type entities interface {
	Get(ctx context.Context, kind, id string) (store.Entity, error)
	Scan(ctx context.Context, kind, after string, limit int) ([]store.Entity, error)
	Commit(ctx context.Context, b store.Batch) error
}

// getJSON reads entity kind/id into v and returns its version (0 and no
// error when it does not exist).
func getJSON(ctx context.Context, st entities, kind, id string, v any) (uint64, error) {
	e, err := st.Get(ctx, kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("visits: read %s %s: %w", kind, id, err)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return 0, fmt.Errorf("visits: decode %s %s: %w", kind, id, err)
	}
	return e.Version, nil
}

// putJSON returns the conditional put of v as version prev+1 of kind/id.
func putJSON(kind, id string, prev uint64, v any) (store.Put, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Put{}, err
	}
	return store.Put{Entity: store.Entity{Kind: kind, ID: id, Version: prev + 1, Data: b}, IfVersion: &prev}, nil
}

// scanAll calls fn with every entity of kind, in ID order.
func scanAll(ctx context.Context, st entities, kind string, fn func(store.Entity) error) error {
	after := ""
	for {
		es, err := st.Scan(ctx, kind, after, store.MaxLimit)
		if err != nil {
			return fmt.Errorf("visits: scan %s: %w", kind, err)
		}
		for _, e := range es {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(es) < store.MaxLimit {
			return nil
		}
		after = es[len(es)-1].ID
	}
}

// storePut returns the put creating entity kind/id with data (version 1;
// the entity must not exist).
func storePut(kind, id string, data []byte) store.Put {
	zero := uint64(0)
	return store.Put{Entity: store.Entity{Kind: kind, ID: id, Version: 1, Data: data}, IfVersion: &zero}
}
