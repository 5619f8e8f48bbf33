package site

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// maxPacket bounds an MQTT packet the broker accepts, well above
// mqttproto.MaxPayload so that an oversized payload reaches the decoder
// and is reported.
const maxPacket = 16 * 1024

// maxKeepAlive is the longest keep alive a device may ask for.
const maxKeepAlive = 30

// openMQTT starts the embedded broker with the site's device hook.
func (s *Site) openMQTT() error {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacket
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(quietHandler{s.log.With("component", "mqtt-broker").Handler()}),
	})
	if err := srv.AddHook(&hook{s: s}, nil); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%w: add hook: %v", ErrListen, err)
	}
	ln := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "devices", Address: s.cfg.MQTTListen})
	if err := srv.AddListener(ln); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%w: mqtt %s: %v", ErrListen, s.cfg.MQTTListen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%w: mqtt serve: %v", ErrListen, err)
	}
	s.srv, s.mqttLn = srv, ln
	s.mu.Lock()
	s.noteLocked("site", "--", "conn", "MQTT broker listening on "+ln.Address())
	s.mu.Unlock()
	return nil
}

// publish publishes a message of the site with QoS 1, not retained.
func (s *Site) publish(topic string, payload []byte) error {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if s.srv == nil || s.pubClosed {
		return ErrClosed
	}
	return s.srv.Publish(topic, payload, false, mqttproto.QoS)
}

// hook is the simulated site's authentication, access-control and
// observation hook on its broker. It accepts a device that names itself
// SITE.KIND.ID (also as client ID) with the secret of the site file and a
// clean session, refuses a last will on another topic, then lets it
// publish and subscribe only as mqttproto.DeviceMayPublish and
// DeviceMaySubscribe allow. Every refusal and every breach it sees is a
// violation; every publish of a device is handed to the site.
type hook struct {
	mqtt.HookBase
	s *Site
}

// ID names the hook for the broker.
func (h *hook) ID() string { return "gatehouse-sim-site" }

// Provides reports the hook methods the broker should call.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnSubscribed, mqtt.OnPublish, mqtt.OnWillSent:
		return true
	}
	return false
}

// OnConnectAuthenticate accepts or refuses a connecting device.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	s := h.s
	user := string(pk.Connect.Username)
	s.mu.Lock()
	defer s.mu.Unlock()
	refuse := func(d *devState, format string, args ...any) bool {
		if d == nil {
			d = s.other("?" + strconv.Quote(user))
		}
		d.sum.Refused++
		s.violateLocked(d, "", RuleAuth, "connection refused: "+format, args...)
		return false
	}
	pd, err := mqttproto.ParseUsername(user)
	if err != nil {
		return refuse(nil, "user name %q is not SITE.KIND.ID", user)
	}
	d := s.byName[string(pd.Kind)+"/"+pd.ID]
	switch {
	case pd.Site != s.f.Site:
		return refuse(nil, "user name %q is for site %q, this is site %q", user, pd.Site, s.f.Site)
	case d == nil:
		return refuse(s.other(string(pd.Kind)+"/"+pd.ID), "no %s %q in the site file", pd.Kind, pd.ID)
	case d.d.CAN != 0:
		return refuse(d, "the site file has this controller on CAN, not MQTT")
	case cl.ID != user:
		return refuse(d, "client ID %q is not the user name %q", cl.ID, user)
	case subtle.ConstantTimeCompare(pk.Connect.Password, []byte(d.d.Secret)) != 1:
		return refuse(d, "bad password")
	case !pk.Connect.Clean || (pk.ProtocolVersion == 5 && pk.Properties.SessionExpiryInterval != 0):
		d.sum.Refused++
		s.violateLocked(d, "", RuleSession, "connection refused: not a clean session (a device connects with clean session, session expiry 0)")
		return false
	}
	if !pk.Connect.WillFlag {
		s.violateLocked(d, "", RuleWill, "no last will set at connect (want %s, {\"v\":1,\"online\":false}, QoS 1, retained)", d.dev.Topic(mqttproto.ChannelState))
	} else {
		topic, _, _ := mqttproto.Will(d.dev)
		if pk.Connect.WillTopic != topic {
			d.sum.Refused++
			s.violateLocked(d, "", RuleWill, "connection refused: last will on %q, not on its state topic %s", pk.Connect.WillTopic, topic)
			return false
		}
		if pk.Connect.WillQos != mqttproto.QoS {
			s.violateLocked(d, "", RuleWill, "last will with QoS %d, want 1", pk.Connect.WillQos)
		}
		if !pk.Connect.WillRetain {
			s.violateLocked(d, "", RuleWill, "last will not retained")
		}
		if st, err := mqttproto.DecodeState(d.d.Kind, pk.Connect.WillPayload); err != nil {
			s.violateLocked(d, "", RuleWill, "last will payload: %v", err)
		} else if st.Online {
			s.violateLocked(d, "", RuleWill, "last will payload says online; want {\"v\":1,\"online\":false}")
		}
	}
	if ka := pk.Connect.Keepalive; ka == 0 || ka > maxKeepAlive {
		s.violateLocked(d, "", RuleKeepAlive, "keep alive %d s; want 1 to %d s so that the site notices a lost device", ka, maxKeepAlive)
	}
	return true
}

// OnSessionEstablished notes a connected device.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.client(cl)
	if d == nil {
		return
	}
	d.cl, d.connected, d.connectedAt = cl, true, s.now()
	d.gotState, d.stateWarned = false, false
	d.subs = map[string]byte{}
	d.sum.Connects++
	s.noteLocked(d.name, "--", "conn", fmt.Sprintf("connected from %s (MQTT %d, keep alive %ds)", cl.Net.Remote, pk.ProtocolVersion, pk.Connect.Keepalive))
}

// OnDisconnect notes a device gone.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	s := h.s
	if s.closing() {
		return // the site ends the run: not the device's doing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.client(cl)
	if d == nil || d.cl != cl {
		return
	}
	d.cl, d.connected, d.online = nil, false, false
	why := "disconnected"
	if err != nil && !errors.Is(err, packets.CodeDisconnect) {
		why += ": " + err.Error()
	}
	s.noteLocked(d.name, "--", "conn", why)
}

// OnWillSent notes a last will published by the broker.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	s := h.s
	if s.closing() {
		return // the site ends the run: not the device's doing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.client(cl); d != nil {
		d.online = false
		s.noteLocked(d.name, "<-", "state", "last will published by the broker: "+string(pk.Payload))
	}
}

// closing reports whether Close has begun.
func (s *Site) closing() bool {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	return s.pubClosed
}

// client returns the device of a connected client; s.mu is held.
func (s *Site) client(cl *mqtt.Client) *devState {
	pd, err := mqttproto.ParseUsername(string(cl.Properties.Username))
	if err != nil {
		return nil
	}
	return s.byName[string(pd.Kind)+"/"+pd.ID]
}

// OnACLCheck applies the device access rules to a publish (write) or a
// subscription (read), and reports refusals.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	s := h.s
	pd, err := mqttproto.ParseUsername(string(cl.Properties.Username))
	if err != nil {
		return false
	}
	if write && mqttproto.DeviceMayPublish(pd, topic) || !write && mqttproto.DeviceMaySubscribe(pd, topic) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.client(cl)
	if d == nil {
		return false
	}
	why := "not one of its own topics"
	if _, err := mqttproto.ParseTopic(topic); err != nil {
		why = err.Error()
	}
	if write {
		s.violateLocked(d, "", RuleACLPublish, "publish on %q refused (%s); a device publishes only on its own tap, event and state topics", topic, why)
	} else {
		s.violateLocked(d, "", RuleACLSubscribe, "subscription to %q refused (%s); a device subscribes only to its own decision and cmd topics", topic, why)
	}
	return false
}

// OnSubscribed notes a device's accepted subscriptions.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.client(cl)
	if d == nil {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		d.subs[f.Filter] = f.Qos
		s.noteLocked(d.name, "--", "conn", fmt.Sprintf("subscribed to %s (QoS %d)", f.Filter, f.Qos))
		if f.Qos != mqttproto.QoS {
			s.violateLocked(d, "", RuleSubscribeQoS, "subscribed to %s with QoS %d; want QoS 1 so that commands arrive at least once", f.Filter, f.Qos)
		}
	}
}

// OnPublish checks and hands on every publish of a device.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.s
	t, terr := mqttproto.ParseTopic(pk.TopicName)
	var (
		m    mqttproto.Message
		derr error
	)
	if terr == nil {
		m, derr = mqttproto.Decode(t, pk.Payload)
	}
	b := &batch{}
	s.mu.Lock()
	d := s.client(cl)
	if d == nil || terr != nil {
		s.mu.Unlock()
		return pk, nil // the ACL refused it already
	}
	if q := pk.FixedHeader.Qos; q != mqttproto.QoS {
		s.violateLocked(d, "", RuleQoS, "%s published with QoS %d; every message is QoS 1", t.Channel, q)
	}
	switch {
	case t.Channel.Retained() && !pk.FixedHeader.Retain:
		s.violateLocked(d, "", RuleRetain, "state published without the retain flag; state is retained")
	case !t.Channel.Retained() && pk.FixedHeader.Retain:
		s.violateLocked(d, "", RuleRetain, "%s published retained; only state is", t.Channel)
	}
	if derr != nil {
		d.sum.In++
		s.noteLocked(d.name, "<-", string(t.Channel), "MALFORMED: "+derr.Error())
		s.violateLocked(d, "", RuleMalformed, "%s payload refused: %v", t.Channel, derr)
		s.mu.Unlock()
		return pk, nil
	}
	s.received(d, m)
	if tap, ok := m.(mqttproto.Tap); ok {
		dec, delay := s.tap(d, tap, b)
		b.outs = append([]out{{d: d, msg: dec, delay: delay}}, b.outs...)
		d.lastSent = s.now()
	} else {
		s.handle(d, m, b)
	}
	s.mu.Unlock()
	s.send(b)
	return pk, nil
}

// quietHandler passes the broker's log records on at debug level, without
// the packets it dumps (their payloads carry card numbers).
type quietHandler struct{ h slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return q.h.Enabled(ctx, slog.LevelDebug)
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk", "packet", "will":
		default:
			out.AddAttrs(a)
		}
		return true
	})
	return q.h.Handle(ctx, out)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler { return quietHandler{q.h.WithAttrs(as)} }
func (q quietHandler) WithGroup(n string) slog.Handler       { return quietHandler{q.h.WithGroup(n)} }
