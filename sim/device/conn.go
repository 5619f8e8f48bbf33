// Package device is the simulator's devices: clients that speak the real
// MQTT device protocol (hardware/mqttproto, docs/protocol-mqtt.md) to a
// site's broker, exactly as a vendor's hardware would.
//
// Conn is what every device kind shares: the device's identity (user name
// and client ID {site}.{kind}.{device}, its own secret as password), a
// clean session, the last will that marks it offline, its retained online
// state published after every connect, its subscriptions to its own
// site-to-device topics (renewed after every reconnect, since a clean
// session forgets them), strict decoding of what it receives, and
// automatic reconnection. A device kind is a small type on top of a Conn
// that handles its channels: Reader, Controller, Kiosk and Dispenser.
//
// Controller is a door controller, over MQTT (DialController) or CAN
// (OpenCANController, through hardware/canbus): it keeps its offline
// caches, event counter, event buffer, door modes and cut-off state on its
// own storage (a bbolt file in its state directory) across restarts, sends
// taps to its site and uses the site's decision, decides alone from the
// cache when it is cut off or a decision does not come, fails secure on a
// high-security door after its maximum offline time, and replays its
// unacknowledged events in order on reconnect and on the site's resend.
//
// Reader publishes taps, each with a request ID unique for the device, and
// matches decisions to the tap waiting for them by request ID, measuring
// the latency from publishing the tap to receiving its decision. A
// decision for no waiting tap (late, or repeated by QoS 1) is counted and
// otherwise ignored, as the protocol asks.
//
// Kiosk and Dispenser are a visitor kiosk and a card dispenser/encoder
// (DialKiosk, DialDispenser): they number their events and keep them until
// the site acknowledges them (in memory, for one run), answer or match
// commands by request ID and act once on each, refuse a command they cannot
// decode with cmd_rejected, and report faults in their retained state;
// their Await methods wait on their own change notifications. Document
// writes the machine-readable zone of a passport or identity card with its
// check digits, for kiosks to scan.
//
// Every method is safe for concurrent use; Close is idempotent.
package device

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Defaults of Config.
const (
	// DefaultKeepAlive is the MQTT keep alive: the protocol's maximum.
	DefaultKeepAlive = 30 * time.Second
	// DefaultConnectTimeout bounds one connection attempt.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultFirmware is the firmware version simulated devices report.
	DefaultFirmware = "gatehouse-sim/1"
	// maxReconnectInterval caps the wait between reconnection attempts.
	maxReconnectInterval = 2 * time.Second
)

// Errors returned by this package.
var (
	// ErrConnect reports a device that could not connect to its broker,
	// or subscribe to its topics there (a refused password or ACL).
	ErrConnect = errors.New("device: cannot connect")
	// ErrClosed reports a call on a closed device.
	ErrClosed = errors.New("device: closed")
	// ErrNoDecision reports a tap that got no decision in time.
	ErrNoDecision = errors.New("no decision")
)

// Config configures one device's connection.
type Config struct {
	// Broker is the broker's address: host:port (plain TCP, or TLS when
	// TLS is set) or a URL tcp://, mqtt://, ssl://, tls:// or mqtts://.
	Broker string
	// Device is the device's identity: site, kind and ID.
	Device mqttproto.Device
	// Secret is the device's password, set when it was commissioned.
	Secret string
	// TLS, when set, makes host:port addresses use TLS with it.
	TLS *tls.Config
	// Firmware is reported in the device's state (default
	// DefaultFirmware).
	Firmware string
	// KeepAlive is the MQTT keep alive (default DefaultKeepAlive, at most
	// 30 s as the protocol asks).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Log receives the device's logs (nil: discard).
	Log *slog.Logger
	// Background makes Dial return at once and connect in the background,
	// retrying (at most 2 s apart) until Close: a device that starts while
	// its broker is unreachable keeps working and connects later. Without
	// it, Dial waits for the first connect and fails when it fails.
	Background bool
	// OnConnect, when set, is called after every connect once the device
	// has subscribed and published its online state, on its own goroutine.
	OnConnect func()
	// OnConnectionLost, when set, is called when the connection is lost,
	// on paho's goroutine; it must not block.
	OnConnectionLost func(error)
	// OnRefused, when set, is called with every received message that
	// does not decode (after it is counted), on the delivery goroutine; it
	// must not block. Kiosks and dispensers answer such a command with
	// cmd_rejected.
	OnRefused func(topic string, payload []byte, err error)
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Firmware == "" {
		c.Firmware = DefaultFirmware
	}
	if c.KeepAlive <= 0 || c.KeepAlive > DefaultKeepAlive {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// BrokerURL turns a broker address into the URL paho dials: host:port
// becomes tcp://host:port, or tls://host:port when useTLS is set; a URL
// with a scheme is kept. It returns an error for an empty address or an
// unknown scheme.
func BrokerURL(addr string, useTLS bool) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("empty broker address")
	}
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		if useTLS {
			return "tls://" + addr, nil
		}
		return "tcp://" + addr, nil
	}
	switch scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		if rest == "" {
			return "", fmt.Errorf("broker %q has no host", addr)
		}
		return addr, nil
	}
	return "", fmt.Errorf("broker %q: unknown scheme %q (want tcp, mqtt, ssl, tls or mqtts)", addr, scheme)
}

// Handler receives a decoded message from one of the device's
// site-to-device topics. It is called from the connection's delivery
// goroutine, one message at a time, and must not block.
type Handler func(t mqttproto.Topic, m mqttproto.Message)

// Conn is one device's MQTT session with its site. Make it with Dial.
type Conn struct {
	cfg    Config
	dev    mqttproto.Device
	log    *slog.Logger
	client paho.Client
	status func() mqttproto.State
	handle Handler

	ready    chan error // the outcome of each connect's setup, for Dial
	connects atomic.Uint64
	lost     atomic.Uint64
	refused  atomic.Uint64 // messages received that did not decode
	setUp    atomic.Bool   // set up (subscribed, state published) since the last connect

	// pubMu orders publications: a state is read and handed to the client
	// in one step, so it never reaches the site after an event newer than
	// the last_seq it reports (the site holds the counter to never go back).
	pubMu sync.Mutex

	closeOnce sync.Once
	closed    chan struct{}
}

// Dial connects a device to its broker and returns once it has subscribed
// to its site-to-device topics and published its online state (retained),
// in that order, as the protocol asks; it does the same again after every
// reconnect. status returns the device's current state (Online set); it is
// called for every state published. handle receives what the device's
// subscriptions deliver. Dial returns an error wrapping ErrConnect when the
// broker cannot be reached before ctx ends, refuses the device, or refuses
// a subscription.
func Dial(ctx context.Context, cfg Config, status func() mqttproto.State, handle Handler) (*Conn, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Device.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	url, err := BrokerURL(cfg.Broker, cfg.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	c := &Conn{
		cfg: cfg, dev: cfg.Device, status: status, handle: handle,
		log:    cfg.Log.With("device", cfg.Device.ID, "kind", string(cfg.Device.Kind), "broker", cfg.Broker),
		ready:  make(chan error, 1),
		closed: make(chan struct{}),
	}
	willTopic, willPayload, err := mqttproto.Will(c.dev)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	opts := paho.NewClientOptions().AddBroker(url).
		SetClientID(c.dev.Username()).SetUsername(c.dev.Username()).SetPassword(cfg.Secret).
		SetCleanSession(true).SetProtocolVersion(4).
		SetKeepAlive(cfg.KeepAlive).SetConnectTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).SetConnectRetry(false).SetMaxReconnectInterval(maxReconnectInterval).
		SetBinaryWill(willTopic, willPayload, mqttproto.QoS, true).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.lost.Add(1)
			c.setUp.Store(false)
			c.log.Warn("device connection lost; reconnecting", "err", err)
			if cfg.OnConnectionLost != nil {
				cfg.OnConnectionLost(err)
			}
		})
	if cfg.Background {
		opts.SetConnectRetry(true).SetConnectRetryInterval(maxReconnectInterval / 4)
	}
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	c.client = paho.NewClient(opts)
	tok := c.client.Connect()
	if cfg.Background {
		return c, nil
	}
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.client.Disconnect(0)
		return nil, fmt.Errorf("%w: %s at %s: %w", ErrConnect, c.dev, cfg.Broker, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %v", ErrConnect, c.dev, cfg.Broker, err)
	}
	select {
	case err := <-c.ready:
		if err != nil {
			c.client.Disconnect(0)
			return nil, fmt.Errorf("%w: %s at %s: %v", ErrConnect, c.dev, cfg.Broker, err)
		}
	case <-ctx.Done():
		c.client.Disconnect(0)
		return nil, fmt.Errorf("%w: %s at %s: %w", ErrConnect, c.dev, cfg.Broker, ctx.Err())
	}
	return c, nil
}

// onConnect runs after every successful connect, on its own goroutine:
// subscribe, then publish the online state.
func (c *Conn) onConnect(cl paho.Client) {
	n := c.connects.Add(1)
	err := c.setup(cl)
	c.setUp.Store(err == nil)
	if err != nil {
		c.log.Error("device setup after connect failed", "err", err)
	} else if n > 1 {
		c.log.Info("device reconnected", "connects", n)
	}
	select {
	case c.ready <- err:
	default: // nobody waits after Dial: a reconnect
	}
	if err == nil && c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
}

func (c *Conn) setup(cl paho.Client) error {
	topics, err := c.dev.Subscriptions()
	if err != nil {
		return err
	}
	for _, t := range topics {
		tok := cl.Subscribe(t, mqttproto.QoS, c.deliver)
		if !tok.WaitTimeout(c.cfg.ConnectTimeout) {
			return fmt.Errorf("subscribe %s: no answer within %v", t, c.cfg.ConnectTimeout)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("subscribe %s: %w", t, err)
		}
		if st, ok := tok.(*paho.SubscribeToken); ok {
			for _, code := range st.Result() {
				if code >= 0x80 {
					return fmt.Errorf("subscribe %s: refused by the broker (0x%02x)", t, code)
				}
			}
		}
	}
	return c.publishState(cl)
}

// publishState publishes the device's current state, retained.
func (c *Conn) publishState(cl paho.Client) error {
	c.pubMu.Lock()
	st := c.status()
	st.Online = true
	if st.Firmware == "" {
		st.Firmware = c.cfg.Firmware
	}
	st.Time = time.Now()
	b, err := st.Marshal()
	if err != nil {
		c.pubMu.Unlock()
		return err
	}
	tok := cl.Publish(c.dev.Topic(mqttproto.ChannelState).String(), mqttproto.QoS, true, b)
	c.pubMu.Unlock()
	return c.wait(tok, "publish state")
}

// PublishState publishes the device's current state (retained) and waits
// for the broker's acknowledgement, at most the connect timeout. It
// returns ErrClosed after Close and the publication's error.
func (c *Conn) PublishState() error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	return c.publishState(c.client)
}

// wait waits for a token, at most the connect timeout.
func (c *Conn) wait(tok paho.Token, what string) error {
	if !tok.WaitTimeout(c.cfg.ConnectTimeout) {
		return fmt.Errorf("%s: no answer within %v", what, c.cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// deliver decodes a received message strictly and hands it to the device.
func (c *Conn) deliver(_ paho.Client, m paho.Message) {
	t, err := mqttproto.ParseTopic(m.Topic())
	var msg mqttproto.Message
	if err == nil {
		msg, err = mqttproto.Decode(t, m.Payload())
	}
	if err != nil {
		c.refused.Add(1)
		c.log.Warn("device refused a message", "topic", m.Topic(), "err", err)
		if c.cfg.OnRefused != nil {
			c.cfg.OnRefused(m.Topic(), m.Payload(), err)
		}
		return
	}
	c.handle(t, msg)
}

// Device returns the device's identity.
func (c *Conn) Device() mqttproto.Device { return c.dev }

// Broker returns the broker address the device was dialled with.
func (c *Conn) Broker() string { return c.cfg.Broker }

// Connected reports whether the connection is up now and set up: the
// device has subscribed to its topics and published its state since it
// last connected.
func (c *Conn) Connected() bool { return c.client.IsConnectionOpen() && c.setUp.Load() }

// Stats is what a connection counted.
type Stats struct {
	// Connects counts successful connects (1 + reconnects).
	Connects uint64
	// Lost counts connections lost.
	Lost uint64
	// Refused counts received messages that did not decode.
	Refused uint64
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	return Stats{Connects: c.connects.Load(), Lost: c.lost.Load(), Refused: c.refused.Load()}
}

// Publish publishes m on the device's own topic of channel ch (QoS 1;
// retained only for state) and waits for the broker's acknowledgement
// until ctx ends. It returns ErrClosed after Close, the message's
// validation error, or the broker's.
func (c *Conn) Publish(ctx context.Context, ch mqttproto.Channel, m mqttproto.Message) error {
	tok, err := c.PublishAsync(ch, m)
	if err != nil {
		return err
	}
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

// PublishAsync publishes m like Publish but returns at once with the
// publication's token.
func (c *Conn) PublishAsync(ch mqttproto.Channel, m mqttproto.Message) (paho.Token, error) {
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	if !ch.FromDevice() || !c.dev.Kind.Uses(ch) {
		return nil, fmt.Errorf("device: a %s does not publish on %s", c.dev.Kind, ch)
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	return c.client.Publish(c.dev.Topic(ch).String(), mqttproto.QoS, ch.Retained(), b), nil
}

// Close publishes the device's offline state (retained; a clean disconnect
// does not fire the will) and disconnects. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.client.IsConnectionOpen() {
			if b, err := (mqttproto.State{}).Marshal(); err == nil {
				tok := c.client.Publish(c.dev.Topic(mqttproto.ChannelState).String(), mqttproto.QoS, true, b)
				tok.WaitTimeout(time.Second)
			}
		}
		c.client.Disconnect(250)
	})
	return nil
}
