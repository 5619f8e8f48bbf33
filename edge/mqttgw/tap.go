package mqttgw

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// unlockValidity is how long after a decision its unlock command may still
// be carried out: the command's Expires. A door controller refuses an
// unlock that arrives later (a redelivery after a broker restart, say), so
// a door never opens long after the tap.
const unlockValidity = 3 * time.Second

// waitFirst bounds how long a repeated tap waits for the first tap of its
// request ID to be decided, when both arrive at once.
const waitFirst = 2 * time.Second

// onMessage handles one message the gateway's subscriptions delivered;
// retained tells that the broker flagged it retained. It reports whether
// the message was dealt with (answered, recorded or refused); false means
// the gateway is closing and did not look at it, so an external broker's
// QoS 1 message should not be acknowledged. It is safe for concurrent use
// and never blocks on the site's event log.
func (g *Gateway) onMessage(topic string, payload []byte, retained bool) bool {
	if !g.gate.enter() {
		return false
	}
	defer g.gate.leave()
	received := time.Now()

	t, err := mqttproto.ParseTopic(topic)
	if err == nil && t.Site != g.cfg.SiteID {
		err = errBadSite
	}
	if err != nil {
		// Only an external broker can deliver such a topic: the embedded
		// one refuses to take it from a device.
		channel := topic[strings.LastIndexByte(topic, '/')+1:]
		if channel == string(mqttproto.ChannelTap) {
			g.m.tapMalformed.Inc()
		} else {
			g.m.messages.WithLabelValues(metricChannel(channel), resultMalformed).Inc()
		}
		g.log.Warn("message refused: bad topic", "topic", truncate(topic), "err", err)
		return true
	}
	if retained && !t.Channel.Retained() {
		// Only states are retained (docs/protocol-mqtt.md §3). A retained
		// tap would be answered again on every subscribe, long after it.
		if t.Channel == mqttproto.ChannelTap {
			g.m.tapRefused.Inc()
		} else {
			g.m.messages.WithLabelValues(string(t.Channel), msgRefused).Inc()
		}
		g.log.Warn("message refused: retained", "device", t.Device, "kind", string(t.Kind), "topic", topic)
		return true
	}
	switch t.Channel {
	case mqttproto.ChannelTap:
		g.handleTap(t, payload, received)
	case mqttproto.ChannelState:
		g.handleState(t, payload, received)
	case mqttproto.ChannelEvent:
		g.handleEvent(t, payload, received)
	default:
		// The gateway subscribes to device-to-site channels only.
		g.log.Debug("message ignored: not a device-to-site channel", "topic", topic)
	}
	return true
}

// errBadSite reports a topic of another site.
var errBadSite = &access.Error{Code: access.Invalid, Op: "mqttgw", Msg: "topic of another site"}

// handleTap answers one tap: it decodes it, checks the device and door,
// answers a repeated request ID with its first decision, and otherwise
// decides, publishes the decision (and an unlock command to the door's
// controller on a grant) and queues the access event.
func (g *Gateway) handleTap(t mqttproto.Topic, payload []byte, received time.Time) {
	log := tapLog{g: g, t: t}
	tap, err := mqttproto.DecodeTap(payload)
	if err != nil {
		g.m.tapMalformed.Inc()
		log.get().Warn("tap refused: malformed payload", "err", redactErr(err))
		return
	}
	log.tap = &tap
	dev, reason := g.checkDevice(t)
	switch {
	case reason != "":
	case dev.Kind != access.DeviceReader && dev.Kind != access.DeviceDoor:
		reason = "device is not a reader"
	case dev.DoorID != tap.Door:
		reason = "door is not the reader's (" + string(dev.DoorID) + ")"
	}
	if reason != "" {
		g.m.tapRefused.Inc()
		log.get().Warn("tap refused", "reason", reason)
		return
	}
	g.seen(dev, received)

	e, fresh := g.dedup.reserve(dedupKey(t, tap.RequestID), received)
	if !fresh {
		g.answerAgain(t, e, &log)
		return
	}
	filled := false
	defer func() {
		if !filled { // Decide panicked: let a repeat be decided afresh
			g.dedup.abandon(e)
		}
	}()
	res, ev := g.decide(t, dev, tap, received)
	g.dedup.fill(e, res)
	filled = true
	waits := g.publishResult(t, res, &log)
	g.m.latency.Observe(time.Since(received).Seconds())
	if res.decision.Grant {
		g.m.tapGranted.Inc()
	} else {
		g.m.tapDenied.Inc()
	}
	g.rec.enqueue(ev)
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		log.get().Debug("tap decided", "grant", res.decision.Grant, "reason", res.decision.Reason.String(),
			"mode", res.decision.Mode.String(), "unlock_cmds", len(res.targets))
	}
	waits.await(&log)
}

// tapLog makes the logger of one tap, with its device, kind, request ID,
// door and redacted card, only when something is logged: taps are the hot
// path, and most are answered without a log line.
type tapLog struct {
	g   *Gateway
	t   mqttproto.Topic
	tap *mqttproto.Tap
	l   *slog.Logger
}

// get returns the tap's logger.
func (l *tapLog) get() *slog.Logger {
	if l.l == nil {
		l.l = l.g.log.With("device", l.t.Device, "kind", string(l.t.Kind))
		if l.tap != nil {
			l.l = l.l.With("request_id", l.tap.RequestID, "door", string(l.tap.Door), "card", l.tap.Card.Redacted())
		}
	}
	return l.l
}

// answerAgain publishes the remembered answer to a repeated tap, once the
// first tap with its request ID has been decided. It records nothing.
func (g *Gateway) answerAgain(t mqttproto.Topic, e *dedupEntry, log *tapLog) {
	timer := time.NewTimer(waitFirst)
	defer timer.Stop()
	select {
	case <-e.done:
	case <-timer.C:
	}
	select {
	case <-e.done:
		if !e.ok {
			log.get().Warn("repeated tap dropped: its first tap was not answered")
			return
		}
	default:
		log.get().Warn("repeated tap dropped: its first tap is still being decided")
		return
	}
	g.m.tapDuplicate.Inc()
	waits := g.publishResult(t, e.res, log)
	log.get().Debug("repeated tap answered again", "grant", e.res.decision.Grant)
	waits.await(log)
}

// decide makes the answer to a new tap and its access event.
func (g *Gateway) decide(t mqttproto.Topic, dev access.Device, tap mqttproto.Tap, at time.Time) (tapResult, *accessv1.AccessEvent) {
	var (
		d    access.Decision
		mode access.Mode
	)
	if g.modes != nil {
		d, mode = g.modes.DecideWithMode(tap.Card, tap.Door, at)
	} else {
		d = g.site.Decide(tap.Card, tap.Door, at)
		mode = access.Online
		if d.Reason == access.ReasonNoOfflineAccess {
			mode = access.Offline
		}
	}
	res := tapResult{decision: mqttproto.Decision{
		RequestID: tap.RequestID,
		Door:      tap.Door,
		Grant:     d.Grant,
		Reason:    d.Reason,
		Mode:      mode,
		Node:      g.cfg.NodeID,
		Time:      at,
	}}
	if d.Grant {
		res.decision.Unlock = g.cfg.Unlock
		res.targets = g.controllers(tap.Door, dev.ID)
		if len(res.targets) > 0 {
			res.unlock = mqttproto.DoorCmd{
				Type:      mqttproto.DoorUnlock,
				RequestID: tap.RequestID,
				Door:      tap.Door,
				Unlock:    g.cfg.Unlock,
				Expires:   at.Add(unlockValidity),
			}
		}
	}
	ev := &accessv1.AccessEvent{
		AtMs:      at.UnixMilli(),
		DoorId:    string(tap.Door),
		Card:      uint64(tap.Card),
		HolderId:  string(d.Holder),
		Granted:   d.Grant,
		Reason:    protoReason(d.Reason),
		RequestId: tap.RequestID,
		Node:      g.cfg.NodeID,
		Offline:   mode == access.Offline,
	}
	return res, ev
}

// publishResult publishes a tap's decision to the device that tapped, then
// the unlock command to each door controller of a grant, without waiting
// for the broker's acknowledgements; it returns them to await. Failures are
// logged: the device times out and retries, or decides alone.
func (g *Gateway) publishResult(t mqttproto.Topic, res tapResult, log *tapLog) pending {
	b, err := res.decision.Marshal()
	if err != nil {
		// Every field comes from checked input and the config; this is a
		// bug, but the device must not get a broken payload.
		log.get().Warn("decision not published: cannot encode", "err", redactErr(err))
		return nil
	}
	var p pending
	p.publish(g.tr, t.Dev().Topic(mqttproto.ChannelDecision).String(), b, log)
	if len(res.targets) == 0 {
		return p
	}
	cmd, err := res.unlock.Marshal()
	if err != nil {
		log.get().Warn("unlock command not published: cannot encode", "err", redactErr(err))
		return p
	}
	for _, d := range res.targets {
		p.publish(g.tr, d.Topic(mqttproto.ChannelCmd).String(), cmd, log)
	}
	return p
}

// pending lists publishes awaiting the broker's acknowledgement.
type pending []pendingPub

// pendingPub is one publish awaiting acknowledgement.
type pendingPub struct {
	topic string
	wait  func() error
}

// publish publishes payload on topic through tr, logging a failure, and
// adds the publish to p when its acknowledgement is still to come.
func (p *pending) publish(tr transport, topic string, payload []byte, log *tapLog) {
	wait, err := tr.publish(topic, payload)
	if err != nil {
		log.get().Warn("publish failed", "topic", topic, "err", err)
		return
	}
	if wait != nil {
		*p = append(*p, pendingPub{topic, wait})
	}
}

// await waits for every acknowledgement, logging failures.
func (p pending) await(log *tapLog) {
	for _, x := range p {
		if err := x.wait(); err != nil {
			log.get().Warn("publish not acknowledged", "topic", x.topic, "err", err)
		}
	}
}

// checkDevice returns the registered device that topic t belongs to, or
// why the device may not use the site: not registered, of another site or
// kind, or disabled.
func (g *Gateway) checkDevice(t mqttproto.Topic) (access.Device, string) {
	d, ok := g.site.Device(access.ID(t.Device))
	switch {
	case !ok:
		return d, "unknown device"
	case string(d.SiteID) != g.cfg.SiteID:
		return d, "device of another site"
	case d.Kind.String() != string(t.Kind):
		return d, "device is a " + d.Kind.String() + ", not a " + string(t.Kind)
	case d.Disabled:
		return d, "device disabled"
	}
	return d, ""
}

// dedupKey is the key of a tap in the dedup cache: its device and request
// ID.
func dedupKey(t mqttproto.Topic, requestID string) string {
	return string(t.Kind) + "/" + t.Device + "/" + requestID
}

// protoReason converts a decision reason to its protobuf enum; the values
// are the same numbers.
func protoReason(r access.Reason) accessv1.Reason {
	if r > access.ReasonNoOfflineAccess {
		return accessv1.Reason_REASON_UNSPECIFIED
	}
	return accessv1.Reason(r)
}

// seen notes that device dev was heard from at at: it updates, for a
// door controller, the door index, then the device's last seen time.
func (g *Gateway) seen(dev access.Device, at time.Time) {
	if dev.Kind == access.DeviceDoor {
		g.doors.learn(dev.DoorID, dev.ID)
	}
	g.status.touch(dev.ID, dev.Kind, at)
}

// controllers returns the door controllers to send door's unlock command to,
// leaving out the device that tapped (it acts on the decision itself).
//
// The site has no index from doors to controllers, so the gateway learns
// one from traffic: a door controller enters it when it connects to the
// embedded broker or sends any valid message (its retained state arrives
// as soon as the gateway subscribes). That covers exactly the controllers
// that can receive a command through this gateway's broker. Every candidate
// is checked against the site's registry on each grant, so a controller
// that was disabled, removed or moved to another door is dropped from the
// index at its door's next grant.
func (g *Gateway) controllers(door, tapping access.ID) []mqttproto.Device {
	var out []mqttproto.Device
	for _, id := range g.doors.get(door) {
		if id == tapping {
			continue
		}
		d, ok := g.site.Device(id)
		if !ok || d.Kind != access.DeviceDoor || d.DoorID != door || d.Disabled || string(d.SiteID) != g.cfg.SiteID {
			g.doors.forget(door, id)
			continue
		}
		out = append(out, mqttproto.Device{Site: g.cfg.SiteID, Kind: mqttproto.KindDoor, ID: string(id)})
	}
	return out
}

// doorIndex maps doors to the door controllers seen serving them. It is
// safe for concurrent use; lists handed out are never modified.
type doorIndex struct {
	mu     sync.RWMutex
	byDoor map[access.ID][]access.ID
}

func (x *doorIndex) init() { x.byDoor = make(map[access.ID][]access.ID) }

// learn records that controller serves door.
func (x *doorIndex) learn(door, controller access.ID) {
	x.mu.RLock()
	known := slices.Contains(x.byDoor[door], controller)
	x.mu.RUnlock()
	if known {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.byDoor[door]; !slices.Contains(old, controller) {
		x.byDoor[door] = append(slices.Clip(old), controller)
	}
}

// get returns the controllers recorded for door.
func (x *doorIndex) get(door access.ID) []access.ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byDoor[door]
}

// forget drops controller from door's list.
func (x *doorIndex) forget(door, controller access.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.byDoor[door]
	i := slices.Index(old, controller)
	if i < 0 {
		return
	}
	if len(old) == 1 {
		delete(x.byDoor, door)
		return
	}
	x.byDoor[door] = slices.Concat(old[:i], old[i+1:])
}

// truncate shortens s for a log line.
func truncate(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// redactErr returns err's text with every run of five or more digits
// redacted as access.CardNumber.Redacted does (all but the last four
// replaced by '*'): a decoder's message may quote a field of the payload,
// and a card number must not reach the logs in full.
func redactErr(err error) string {
	s := err.Error()
	var b []byte
	run := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			run++
			continue
		}
		if run > 4 {
			if b == nil {
				b = []byte(s)
			}
			for j := i - run; j < i-4; j++ {
				b[j] = '*'
			}
		}
		run = 0
	}
	if b == nil {
		return s
	}
	return string(b)
}

// metricChannel returns c if it is a channel name, else "unknown", so that
// a hostile topic cannot mint label values.
func metricChannel(c string) string {
	if mqttproto.Channel(c).Valid() {
		return c
	}
	return "unknown"
}
