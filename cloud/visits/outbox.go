package visits

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// The outbox: every email the service sends is first an entity of kind
// KindOutbox, put in the same store commit as the change that causes it
// (an invitation with its visit), so an email is queued exactly when its
// change is durable. A worker sends what is due through a Sender, and
// marks each sent; a failed attempt is retried with exponential backoff;
// a message the relay refuses as malformed (mail.ErrBadMessage) is marked
// failed and not retried. Delivery is at least once: a crash between the
// relay's acceptance and the mark sends the message again, with the same
// Message-ID, so the recipient's mail system can drop the duplicate.

// Sender delivers one email; *mail.Sender is one. An error wrapping
// mail.ErrBadMessage means retrying will not help.
type Sender interface {
	Send(ctx context.Context, m mail.Message) error
}

// outboxMail is one queued email, as stored.
type outboxMail struct {
	ID        string       `json:"id"`
	Visit     access.ID    `json:"visit"`
	Kind      string       `json:"kind"` // mailInvitation, mailPickup
	Message   mail.Message `json:"message"`
	Created   time.Time    `json:"created"`
	Attempts  int          `json:"attempts,omitempty"`
	NextAt    time.Time    `json:"next_at,omitzero"`
	SentAt    time.Time    `json:"sent_at,omitzero"`
	Failed    bool         `json:"failed,omitempty"`
	LastError string       `json:"last_error,omitempty"`
}

// done reports whether m needs no more attempts.
func (m outboxMail) done() bool { return !m.SentAt.IsZero() || m.Failed }

// The kinds of email.
const (
	mailInvitation = "invitation"
	mailPickup     = "host_pickup_link"
)

// outbox is the worker that sends queued email.
type outbox struct {
	st       entities
	send     Sender // nil: nothing is sent, mail stays queued
	log      *slog.Logger
	now      func() time.Time
	retryMin time.Duration
	retryMax time.Duration
	timeout  time.Duration

	kick chan struct{} // buffered: a new message was queued

	low string // every outbox ID up to low is done; only run uses it
}

func newOutbox(st entities, send Sender, log *slog.Logger, now func() time.Time, retryMin, retryMax time.Duration) *outbox {
	return &outbox{st: st, send: send, log: log, now: now, retryMin: retryMin, retryMax: retryMax, timeout: time.Minute,
		kick: make(chan struct{}, 1)}
}

// Kick wakes the worker: a message was queued.
func (o *outbox) Kick() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run sends until ctx is done.
func (o *outbox) run(ctx context.Context) {
	for {
		next, err := o.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.log.Warn("outbox: pass failed", "err", err)
			next = o.now().Add(o.retryMin)
		}
		var timer *time.Timer
		var due <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(o.now())))
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-o.kick:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// pass attempts every due message once and returns when the next one not
// yet due is (zero: none waiting).
func (o *outbox) pass(ctx context.Context) (time.Time, error) {
	var next time.Time
	low, allDone := o.low, true
	err := scanAll(ctx, o.st, KindOutbox, func(e store.Entity) error {
		if e.ID <= o.low {
			return nil
		}
		var m outboxMail
		if err := json.Unmarshal(e.Data, &m); err != nil {
			o.log.Error("outbox: undecodable message skipped", "outbox", e.ID, "err", err)
			return nil
		}
		if !m.done() && o.send != nil && !o.now().Before(m.NextAt) {
			m = o.attempt(ctx, e.Version, m)
		}
		if m.done() {
			if allDone {
				low = e.ID
			}
			return nil
		}
		allDone = false
		if o.send != nil && (next.IsZero() || m.NextAt.Before(next)) {
			next = m.NextAt
		}
		return ctx.Err()
	})
	o.low = low
	return next, err
}

// attempt sends m once and records the outcome (as version version+1); it
// returns m as recorded.
func (o *outbox) attempt(ctx context.Context, version uint64, m outboxMail) outboxMail {
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	err := o.send.Send(sctx, m.Message)
	cancel()
	if ctx.Err() != nil {
		return m // stopping: the attempt does not count
	}
	now := o.now()
	m.Attempts++
	switch {
	case err == nil:
		m.SentAt, m.LastError = now, ""
		o.log.Info("outbox: sent", "outbox", m.ID, "visit", m.Visit, "kind", m.Kind, "attempts", m.Attempts)
	case errors.Is(err, mail.ErrBadMessage):
		m.Failed, m.LastError = true, err.Error()
		o.log.Error("outbox: message refused, not retried", "outbox", m.ID, "visit", m.Visit, "err", err)
	default:
		backoff := o.retryMin << min(m.Attempts-1, 30)
		if backoff <= 0 || backoff > o.retryMax {
			backoff = o.retryMax
		}
		m.NextAt, m.LastError = now.Add(backoff), err.Error()
		o.log.Warn("outbox: send failed, will retry", "outbox", m.ID, "visit", m.Visit, "attempts", m.Attempts, "retry_in", backoff, "err", err)
	}
	p, perr := putJSON(KindOutbox, m.ID, version, m)
	if perr == nil {
		perr = o.st.Commit(ctx, store.Batch{Puts: []store.Put{p}})
	}
	if perr != nil {
		// Not recorded: the message is attempted again later, with the
		// same Message-ID.
		o.log.Warn("outbox: recording an attempt failed", "outbox", m.ID, "err", perr)
		m.SentAt, m.Failed, m.NextAt = time.Time{}, false, now.Add(o.retryMin)
	}
	return m
}
