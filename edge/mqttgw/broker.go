package mqttgw

import (
	"context"
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// maxPacket bounds an MQTT packet the embedded broker accepts from a device.
// It is well above mqttproto.MaxPayload so that an oversized payload reaches
// the gateway, which refuses it with a logged reason, while a client cannot
// make the broker buffer megabytes.
const maxPacket = 16 * 1024

// embedded is the embedded broker (mochi-mqtt) and its inline client, the
// site service's own identity on it, which bypasses the access rules.
type embedded struct {
	srv     *mqtt.Server
	ln      *listeners.TCP
	filters []string
}

// newEmbedded starts the embedded broker with the device auth hook and a
// TCP (or TLS) listener. It returns an error wrapping ErrBroker when the
// listener cannot be opened.
func (g *Gateway) newEmbedded() (*embedded, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacket
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(brokerLogHandler{g.log.With("component", "mqtt-broker").Handler()}),
	})
	if err := srv.AddHook(&authHook{g: g}, nil); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("%w: add auth hook: %v", ErrBroker, err)
	}
	ln := listeners.NewTCP(listeners.Config{Type: "tcp", ID: deviceListener, Address: g.cfg.ListenAddr, TLSConfig: g.cfg.TLS})
	if err := srv.AddListener(ln); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("%w: listen on %s: %v", ErrBroker, g.cfg.ListenAddr, err)
	}
	b := &embedded{srv: srv, ln: ln}
	if err := srv.Serve(); err != nil {
		b.close()
		return nil, fmt.Errorf("%w: serve: %v", ErrBroker, err)
	}
	return b, nil
}

// subscribe makes the gateway's inline subscriptions to taps, events and
// states. Retained messages (device states) are handed to g before it
// returns.
func (b *embedded) subscribe(g *Gateway) error {
	filters, err := mqttproto.SiteSubscriptions(g.cfg.SiteID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	for i, f := range filters {
		err := b.srv.Subscribe(f, i+1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			g.onMessage(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
		})
		if err != nil {
			return fmt.Errorf("%w: subscribe %s: %v", ErrBroker, f, err)
		}
		b.filters = append(b.filters, f)
	}
	return nil
}

// addr returns the listener's bound address.
func (b *embedded) addr() string { return b.ln.Address() }

// publish publishes through the inline client. Delivery to each subscribed
// device is queued on its connection (QoS 1); publish does not wait for it.
func (b *embedded) publish(topic string, payload []byte) (func() error, error) {
	return nil, b.srv.Publish(topic, payload, false, mqttproto.QoS)
}

// stopTaps removes the gateway's inline subscriptions.
func (b *embedded) stopTaps() {
	for i, f := range b.filters {
		_ = b.srv.Unsubscribe(f, i+1)
	}
	b.filters = nil
}

// deviceListener is the ID of the broker's listener for devices.
const deviceListener = "devices"

// close removes the gateway's subscriptions and stops the broker, which
// disconnects every device and waits for their connections to end.
func (b *embedded) close() {
	b.stopTaps()
	_ = CloseBroker(b.srv, deviceListener)
}

// CloseBroker stops srv as srv.Close does, without its shutdown deadlock.
// mochi's own listener close reads the client map under a read lock taken
// twice (Clients.GetByListener calls Len), which deadlocks when a client
// that is disconnecting asks for the write lock in between
// (mochi-mqtt/server#488, not fixed in v2.7.9; it hung a CI run under
// -race). So the listeners named are closed first, with a closer that reads
// the map once; srv.Close then finds them closed and closes no client
// itself.
func CloseBroker(srv *mqtt.Server, listenerIDs ...string) error {
	closer := func(id string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	}
	for _, id := range listenerIDs {
		srv.Listeners.Close(id, closer)
	}
	return srv.Close()
}

// Reasons of refused connections, the "reason" label of auth_failures_total.
const (
	authBadUsername = "bad_username"
	authClientID    = "client_id_mismatch"
	authWrongSite   = "wrong_site"
	authUnknown     = "unknown_device"
	authWrongKind   = "wrong_kind"
	authDisabled    = "disabled"
	authBadPassword = "bad_password"
	authPersistent  = "persistent_session"
	authBadWill     = "bad_will"
)

// authHook is the embedded broker's authentication and access-control hook.
//
// A device connects with user name SITE.KIND.ID (mqttproto.Device.Username)
// and its secret as password. On every connect the hook looks the device up
// through Site.Device, so commissioning, disabling and removal take effect
// at the next connect without a restart, and accepts it only when:
//   - the user name parses and names this site;
//   - the client ID equals the user name (docs/protocol-mqtt.md §2). This is
//     what keeps a device from taking over another device's session: the
//     broker keys sessions by client ID, so a device can only ever reach
//     the session of its own name;
//   - the device is registered at this site, of the kind its name says, and
//     not disabled, and the password is its secret (Device.Authenticate);
//   - it asks for a clean session (§2), so no command is delivered late;
//   - its last will, if any, is on its own state topic, since the broker
//     publishes a will without an access check.
//
// Every publish and subscribe (and every delivery) is then checked with
// mqttproto.DeviceMayPublish and DeviceMaySubscribe against the identity
// of the user name. The inline client, the site service, is not checked.
// Refusals are logged with the device and a reason, and counted.
type authHook struct {
	mqtt.HookBase
	g *Gateway
}

// ID names the hook for the broker.
func (h *authHook) ID() string { return "gatehouse-device-auth" }

// Provides reports the hook methods the broker should call.
func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnectAuthenticate accepts or refuses a connecting device.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	g := h.g
	user := string(pk.Connect.Username)
	refuse := func(reason string, dev string) bool {
		g.m.authFailures.WithLabelValues(reason).Inc()
		g.log.Warn("device connection refused", "reason", reason, "device", dev,
			"username", truncate(user), "client_id", truncate(cl.ID), "remote", cl.Net.Remote)
		return false
	}
	pd, err := mqttproto.ParseUsername(user)
	if err != nil {
		return refuse(authBadUsername, "")
	}
	if cl.ID != user {
		return refuse(authClientID, pd.ID)
	}
	if pd.Site != g.cfg.SiteID {
		return refuse(authWrongSite, pd.ID)
	}
	dev, ok := g.site.Device(access.ID(pd.ID))
	switch {
	case !ok:
		return refuse(authUnknown, pd.ID)
	case string(dev.SiteID) != g.cfg.SiteID:
		return refuse(authWrongSite, pd.ID)
	case dev.Kind.String() != string(pd.Kind):
		return refuse(authWrongKind, pd.ID)
	case dev.Disabled:
		return refuse(authDisabled, pd.ID)
	case !dev.Authenticate(pk.Connect.Password):
		return refuse(authBadPassword, pd.ID)
	case !pk.Connect.Clean || (pk.ProtocolVersion == 5 && pk.Properties.SessionExpiryInterval != 0):
		return refuse(authPersistent, pd.ID)
	}
	if pk.Connect.WillFlag {
		// Any payload will do: the state handler decodes it.
		topic, _, err := mqttproto.Will(pd)
		if err != nil || pk.Connect.WillTopic != topic {
			return refuse(authBadWill, pd.ID)
		}
	}
	if dev.Kind == access.DeviceDoor {
		g.doors.learn(dev.DoorID, dev.ID)
	}
	return true
}

// OnACLCheck applies the device access rules to a publish (write) or a
// subscription or delivery (read).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	g := h.g
	pd, err := mqttproto.ParseUsername(string(cl.Properties.Username))
	ok := err == nil
	if ok && write {
		ok = mqttproto.DeviceMayPublish(pd, topic)
	} else if ok {
		ok = mqttproto.DeviceMaySubscribe(pd, topic)
	}
	if !ok {
		action := "subscribe"
		if write {
			action = "publish"
		}
		g.m.aclRefusals.WithLabelValues(action).Inc()
		g.log.Warn("device "+action+" refused", "device", pd.ID, "kind", string(pd.Kind), "topic", truncate(topic))
	}
	return ok
}

// OnSessionEstablished counts a connected device.
func (h *authHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.g.m.clients.Inc()
	h.g.log.Debug("device connected", "client_id", cl.ID, "remote", cl.Net.Remote)
}

// OnDisconnect counts a device gone.
func (h *authHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.g.m.clients.Dec()
	h.g.log.Debug("device disconnected", "client_id", cl.ID, "err", err)
}

// brokerLogHandler passes mochi's log records on, with three changes: its
// info lines (such as every listener start) become debug; the message-less
// warning it logs for every connection that ends with an error (each
// refused connection among them, which the gateway logs itself with the
// reason) becomes debug too; and the packets it dumps ("pk", "packet",
// "will" attributes) are left out, because a packet's payload carries card
// numbers.
type brokerLogHandler struct{ h slog.Handler }

func (b brokerLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// A message-less warning may be demoted, so ask about the lower level.
	return b.h.Enabled(ctx, slog.LevelDebug) || b.h.Enabled(ctx, demote(l))
}

func (b brokerLogHandler) Handle(ctx context.Context, r slog.Record) error {
	level, msg := demote(r.Level), r.Message
	if msg == "" && level == slog.LevelWarn {
		level, msg = slog.LevelDebug, "connection ended"
	}
	if !b.h.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk", "packet", "will":
		default:
			out.AddAttrs(a)
		}
		return true
	})
	return b.h.Handle(ctx, out)
}

func (b brokerLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return brokerLogHandler{b.h.WithAttrs(as)}
}

func (b brokerLogHandler) WithGroup(name string) slog.Handler {
	return brokerLogHandler{b.h.WithGroup(name)}
}

// demote lowers info to debug and leaves other levels alone.
func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}
