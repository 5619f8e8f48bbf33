package device

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// ReaderConfig configures a simulated card reader.
type ReaderConfig struct {
	Config
	// Door is the door the reader is at; every tap names it.
	Door access.ID
}

// Reader is a simulated card reader: it reports taps and waits for their
// decisions. Make it with DialReader. It is safe for concurrent use: many
// taps may wait at once (load mode).
type Reader struct {
	conn *Conn
	door access.ID
	boot string // random per Reader, so request IDs never repeat across runs
	seq  atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan mqttproto.Decision

	unmatched atomic.Uint64 // decisions for no waiting tap
}

// DialReader connects a reader (cfg.Device.Kind must be
// mqttproto.KindReader) and returns once it is subscribed to its decision
// topic and has published its online state. It returns Dial's errors.
func DialReader(ctx context.Context, cfg ReaderConfig) (*Reader, error) {
	if cfg.Device.Kind != mqttproto.KindReader {
		return nil, fmt.Errorf("%w: device %s is not a reader", ErrConnect, cfg.Device)
	}
	if _, err := access.ParseID(string(cfg.Door)); err != nil {
		return nil, fmt.Errorf("%w: reader %s: door: %v", ErrConnect, cfg.Device, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &Reader{door: cfg.Door, boot: hex.EncodeToString(b[:]), pending: map[string]chan mqttproto.Decision{}}
	status := func() mqttproto.State {
		return mqttproto.State{Online: true, Reader: &mqttproto.ReaderStatus{}}
	}
	c, err := Dial(ctx, cfg.Config, status, r.onMessage)
	if err != nil {
		return nil, err
	}
	r.conn = c
	return r, nil
}

// onMessage hands a decision to the tap waiting for it.
func (r *Reader) onMessage(_ mqttproto.Topic, m mqttproto.Message) {
	d, ok := m.(mqttproto.Decision)
	if !ok {
		return
	}
	r.mu.Lock()
	ch := r.pending[d.RequestID]
	delete(r.pending, d.RequestID)
	r.mu.Unlock()
	if ch == nil {
		r.unmatched.Add(1)
		r.conn.log.Debug("decision for no waiting tap ignored", "request_id", d.RequestID)
		return
	}
	ch <- d // buffered, and only ever sent once
}

// Conn returns the reader's connection.
func (r *Reader) Conn() *Conn { return r.conn }

// Door returns the reader's door.
func (r *Reader) Door() access.ID { return r.door }

// Unmatched returns how many decisions arrived for no waiting tap (late,
// or repeated).
func (r *Reader) Unmatched() uint64 { return r.unmatched.Load() }

// Result is the outcome of one tap.
type Result struct {
	// RequestID is the tap's request ID.
	RequestID string
	// Sent is when the tap was published.
	Sent time.Time
	// Latency is the time from publishing the tap to receiving its
	// decision.
	Latency time.Duration
	// Decision is the site's answer.
	Decision mqttproto.Decision
}

// Tap presents card at the reader: it publishes a tap with a new request
// ID and waits for the decision with that request ID, at most timeout
// (mqttproto.DecisionTimeout when zero or less) and until ctx ends. It
// returns an error wrapping ErrNoDecision when no decision came in time,
// ErrClosed after Close, ctx's error, or the publication's error. A
// decision that comes after Tap gave up is ignored (see Unmatched).
func (r *Reader) Tap(ctx context.Context, card access.CardNumber, timeout time.Duration) (Result, error) {
	if timeout <= 0 {
		timeout = mqttproto.DecisionTimeout
	}
	id := "sim." + r.boot + "." + strconv.FormatUint(r.seq.Add(1), 10)
	ch := make(chan mqttproto.Decision, 1)
	r.mu.Lock()
	r.pending[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}()
	res := Result{RequestID: id, Sent: time.Now()}
	tok, err := r.conn.PublishAsync(mqttproto.ChannelTap, mqttproto.Tap{RequestID: id, Door: r.door, Card: card, Time: res.Sent})
	if err != nil {
		return res, err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	published := tok.Done()
	for {
		select {
		case d := <-ch:
			res.Latency = time.Since(res.Sent)
			res.Decision = d
			return res, nil
		case <-published:
			if err := tok.Error(); err != nil {
				return res, fmt.Errorf("publish tap: %w", err)
			}
			published = nil
		case <-timer.C:
			return res, fmt.Errorf("%w within %v (request %s)", ErrNoDecision, timeout, id)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-r.conn.closed:
			return res, ErrClosed
		}
	}
}

// Close disconnects the reader (see Conn.Close).
func (r *Reader) Close() error { return r.conn.Close() }
