package mqttgw

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Defaults of Config, applied by WithDefaults to fields left at zero.
const (
	// DefaultListenAddr is where the embedded broker listens for devices.
	DefaultListenAddr = ":1883"
	// DefaultUnlock is how long a grant releases the lock.
	DefaultUnlock = 5 * time.Second
	// DefaultDedupTTL is how long a tap's decision is remembered for
	// repeats of its request ID.
	DefaultDedupTTL = 10 * time.Minute
	// DefaultDedupSize is how many tap decisions are remembered at most.
	DefaultDedupSize = 100_000
	// DefaultEventBatchMax is the most access events per RecordEvents call.
	DefaultEventBatchMax = 500
	// DefaultEventFlushInterval is the longest pause between two attempts
	// to record queued events (the cap of the retry backoff).
	DefaultEventFlushInterval = time.Second
	// DefaultEventLinger is the default Config.EventLinger. 100 ms makes
	// about 9 event commits a second at 500 taps/s instead of about 30,
	// but showed no tap-latency gain above the test machine's noise, and
	// delays anti-passback and shutdown flushing (docs/edge.md, "Door
	// taps: what competes with them"): 20 ms is kept.
	DefaultEventLinger = 20 * time.Millisecond
	// DefaultEventQueue is how many access events may wait to be recorded
	// before the oldest are dropped.
	DefaultEventQueue = 100_000
	// DefaultEventTimeout bounds one RecordEvents call.
	DefaultEventTimeout = 10 * time.Second
	// DefaultCloseTimeout bounds how long Close waits for queued events to
	// be recorded.
	DefaultCloseTimeout = 5 * time.Second
)

// Config configures a Gateway. The zero value of every optional field
// means its default (see WithDefaults). A Config is a plain value; the
// Gateway keeps its own copy.
type Config struct {
	// SiteID is the site's ID, the second level of every topic
	// (gh/{site}/...): 1 to 64 characters of A-Z a-z 0-9 _ -. Required.
	SiteID string
	// NodeID names this edge node in decisions and events, in the
	// external broker's client ID and in metrics: 1 to 64 characters of
	// A-Z a-z 0-9 . _ : -. Required.
	NodeID string

	// ListenAddr is the embedded broker's TCP listen address (default
	// DefaultListenAddr; "127.0.0.1:0" picks a free port, see
	// Gateway.Addr). Ignored when BrokerURL is set.
	ListenAddr string
	// BrokerURL selects external broker mode: the URL of the site's
	// broker, such as "tcp://127.0.0.1:1883" (schemes tcp, mqtt, ssl, tls,
	// mqtts, ws, wss). When set, no embedded broker is started and device
	// authentication is the broker's job.
	BrokerURL string
	// ServiceUsername and ServicePassword are the site service's
	// credentials at the external broker; empty connects anonymously.
	ServiceUsername string
	ServicePassword string
	// TLS, when set, makes the embedded broker's listener serve TLS with
	// it, or the external client connect with it.
	TLS *tls.Config

	// Doors, when set, takes the state messages and events of door
	// controllers (edge/doors.Manager), with a function that sends a
	// command to the controller on its cmd topic (QoS 1). In external
	// broker mode the gateway also subscribes to every door controller's
	// events without sharing them, so that the node in charge of the
	// controllers (the Raft leader; see DoorManager) receives all of them.
	Doors DoorManager

	// Unlock is how long a grant releases the lock, in the decision and
	// the unlock command: 1 ms to mqttproto.MaxUnlock (default
	// DefaultUnlock).
	Unlock time.Duration
	// DedupTTL is how long a tap's decision is remembered, so that a
	// repeat of its request ID gets the same decision and no second event
	// (default DefaultDedupTTL).
	DedupTTL time.Duration
	// DedupSize bounds the remembered decisions; the oldest go first
	// (default DefaultDedupSize).
	DedupSize int

	// EventBatchMax is the most access events handed to one
	// Site.RecordEvents call (default DefaultEventBatchMax).
	EventBatchMax int
	// EventFlushInterval is the longest pause between two attempts to
	// record queued events: queued events are recorded at once when the
	// recorder is idle, right after the previous call otherwise, and a
	// failing call is retried with a backoff capped at this interval
	// (default DefaultEventFlushInterval).
	EventFlushInterval time.Duration
	// EventLinger is how long the recorder waits after each commit for
	// more events to share the next one (default DefaultEventLinger; a
	// negative value disables it). It bounds how many Raft commits access
	// events cost per second, not how long a tap waits.
	EventLinger time.Duration
	// EventQueue bounds the access events waiting to be recorded; when it
	// is full the oldest is dropped (default DefaultEventQueue).
	EventQueue int
	// EventTimeout bounds one Site.RecordEvents call (default
	// DefaultEventTimeout).
	EventTimeout time.Duration
	// CloseTimeout bounds how long Close waits for queued events to be
	// recorded (default DefaultCloseTimeout).
	CloseTimeout time.Duration

	// Registerer receives the gateway's Prometheus metrics on Open (and
	// loses them on Close); nil means no metrics are exported.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with every optional field left at zero set to its
// default. It is safe for concurrent use.
func (c Config) WithDefaults() Config {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.Unlock == 0 {
		c.Unlock = DefaultUnlock
	}
	if c.DedupTTL == 0 {
		c.DedupTTL = DefaultDedupTTL
	}
	if c.DedupSize == 0 {
		c.DedupSize = DefaultDedupSize
	}
	if c.EventBatchMax == 0 {
		c.EventBatchMax = DefaultEventBatchMax
	}
	if c.EventLinger == 0 {
		c.EventLinger = DefaultEventLinger
	}
	if c.EventFlushInterval == 0 {
		c.EventFlushInterval = DefaultEventFlushInterval
	}
	if c.EventQueue == 0 {
		c.EventQueue = DefaultEventQueue
	}
	if c.EventTimeout == 0 {
		c.EventTimeout = DefaultEventTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	return c
}

// Validate reports the first problem with c (after WithDefaults) as an
// error wrapping ErrBadConfig. It is safe for concurrent use.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	switch {
	case !mqttproto.ValidName(c.SiteID):
		return bad("site id %q: want 1 to %d characters of A-Z a-z 0-9 _ -", c.SiteID, mqttproto.MaxNameLen)
	case !validNodeID(c.NodeID):
		return bad("node id %q: want 1 to %d characters of A-Z a-z 0-9 . _ : -", c.NodeID, mqttproto.MaxRequestID)
	case c.BrokerURL == "" && c.ListenAddr == "":
		return bad("listen address is required without a broker URL")
	case c.Unlock < time.Millisecond || c.Unlock > mqttproto.MaxUnlock:
		return bad("unlock %v: want 1ms to %v", c.Unlock, mqttproto.MaxUnlock)
	case c.DedupTTL <= 0:
		return bad("dedup ttl %v must be positive", c.DedupTTL)
	case c.DedupSize <= 0:
		return bad("dedup size %d must be positive", c.DedupSize)
	case c.EventBatchMax <= 0:
		return bad("event batch max %d must be positive", c.EventBatchMax)
	case c.EventFlushInterval <= 0:
		return bad("event flush interval %v must be positive", c.EventFlushInterval)
	case c.EventQueue <= 0:
		return bad("event queue %d must be positive", c.EventQueue)
	case c.EventTimeout <= 0:
		return bad("event timeout %v must be positive", c.EventTimeout)
	case c.CloseTimeout <= 0:
		return bad("close timeout %v must be positive", c.CloseTimeout)
	}
	if c.BrokerURL != "" {
		u, err := url.Parse(c.BrokerURL)
		if err != nil {
			return bad("broker url: %v", err)
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			return bad("broker url %q: want a tcp, mqtt, ssl, tls, mqtts, ws or wss URL", c.BrokerURL)
		}
		if u.Host == "" {
			return bad("broker url %q has no host", c.BrokerURL)
		}
	}
	return nil
}

// validNodeID reports whether s is 1 to mqttproto.MaxRequestID characters of
// A-Z a-z 0-9 . _ : -, the alphabet of the decision's node field.
func validNodeID(s string) bool {
	if len(s) == 0 || len(s) > mqttproto.MaxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
