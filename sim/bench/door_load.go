package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/mqttgw"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// doorReply is what a reader makes of a message on its decision topic.
type doorReply struct {
	rid    string
	check  bool // a real decision, to be checked against the card
	grant  bool
	reason access.Reason
	online bool
}

// doorDecisionReply decodes a node's decision.
func doorDecisionReply(b []byte) (doorReply, error) {
	d, err := mqttproto.DecodeDecision(b)
	if err != nil {
		return doorReply{}, err
	}
	return doorReply{rid: d.RequestID, check: true, grant: d.Grant, reason: d.Reason, online: d.Mode == access.Online}, nil
}

// doorEchoReply decodes the echo floor's reply: the tap itself.
func doorEchoReply(b []byte) (doorReply, error) {
	t, err := mqttproto.DecodeTap(b)
	if err != nil {
		return doorReply{}, err
	}
	return doorReply{rid: t.RequestID}, nil
}

// doorClient is a connected reader: a paho client speaking the device
// protocol, subscribed to its decision topic. Replies go to the current
// sink: the warm-up's channel, then the load's slots.
type doorClient struct {
	r      doorReader
	dev    mqttproto.Device
	c      paho.Client
	tap    string // its tap topic
	sink   atomic.Pointer[doorSink]
	decErr atomic.Int64 // undecodable replies
}

// doorSink receives a reader's replies.
type doorSink struct {
	warm chan doorReply // warm-up replies, or nil
	run  *doorLoad      // load replies, or nil
}

// doorConnectReaders connects one paho client per reader to the broker at
// addr, with the device's credentials and last will as a real reader
// connects, and subscribes each to its decision topic. It returns the
// clients connected so far also with an error, for disconnecting.
func doorConnectReaders(addr, site string, readers []doorReader, decode func([]byte) (doorReply, error)) ([]*doorClient, error) {
	var out []*doorClient
	for _, r := range readers {
		dc := &doorClient{r: r, dev: mqttproto.Device{Site: site, Kind: mqttproto.KindReader, ID: r.id}}
		dc.tap = dc.dev.Topic(mqttproto.ChannelTap).String()
		willTopic, willPayload, err := mqttproto.Will(dc.dev)
		if err != nil {
			return out, err
		}
		opts := paho.NewClientOptions().AddBroker("tcp://"+addr).
			SetClientID(dc.dev.Username()).SetUsername(dc.dev.Username()).SetPassword(r.secret).
			SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).
			SetBinaryWill(willTopic, willPayload, mqttproto.QoS, true)
		dc.c = paho.NewClient(opts)
		if tok := dc.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return out, fmt.Errorf("reader %s: connect to %s: %v", r.id, addr, tok.Error())
		}
		out = append(out, dc)
		tok := dc.c.Subscribe(dc.dev.Topic(mqttproto.ChannelDecision).String(), mqttproto.QoS, func(_ paho.Client, m paho.Message) {
			now := time.Now()
			rep, err := decode(m.Payload())
			if err != nil {
				dc.decErr.Add(1)
				return
			}
			s := dc.sink.Load()
			switch {
			case s == nil:
			case s.run != nil:
				s.run.reply(rep, now)
			case s.warm != nil:
				select {
				case s.warm <- rep:
				default:
				}
			}
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return out, fmt.Errorf("reader %s: subscribe: %v", r.id, tok.Error())
		}
	}
	return out, nil
}

// doorDisconnect disconnects the readers.
func doorDisconnect(cs []*doorClient) {
	for _, c := range cs {
		c.c.Disconnect(50)
	}
}

// doorWarmUp sends one tap of a loaded card per reader, one reader after
// the other, and checks that each is answered with a grant (the echo's
// readers just get their tap back). It is not measured: it opens every
// path once and proves the setup before the load.
func doorWarmUp(ctx context.Context, cs []*doorClient, cardBase uint64) error {
	for i, c := range cs {
		warm := make(chan doorReply, 4)
		c.sink.Store(&doorSink{warm: warm})
		rid := "warm-" + strconv.Itoa(i)
		b, err := mqttproto.Tap{RequestID: rid, Door: c.r.door, Card: access.CardNumber(cardBase + uint64(i))}.Marshal()
		if err != nil {
			return err
		}
		if tok := c.c.Publish(c.tap, mqttproto.QoS, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("warm-up: reader %s: publish: %v", c.r.id, tok.Error())
		}
		timer := time.NewTimer(10 * time.Second)
	wait:
		for {
			select {
			case rep := <-warm:
				if rep.rid != rid {
					continue
				}
				if rep.check && !rep.grant {
					timer.Stop()
					return fmt.Errorf("warm-up: reader %s: loaded card denied (%v)", c.r.id, rep.reason)
				}
				break wait
			case <-timer.C:
				return fmt.Errorf("warm-up: reader %s: no reply to %s within 10 s", c.r.id, rid)
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			}
		}
		timer.Stop()
	}
	return nil
}

// doorLoad is one open-loop run: every tap has a slot, taken in schedule
// order per reader, and its request ID names the slot.
type doorLoad struct {
	base    time.Time      // times below are monotonic nanoseconds since base
	sent    []atomic.Int64 // when the publish call was made, +1; 0 if not sent
	lat     []atomic.Int64 // the first reply's latency, +1; 0 if none
	unknown []bool         // the tap's card is not loaded (written before sent)
	wrong   atomic.Int64
	offline atomic.Int64
	stray   atomic.Int64 // replies naming no slot of this run
}

// reply records a reply received at now.
func (l *doorLoad) reply(rep doorReply, now time.Time) {
	slot, ok := doorSlot(rep.rid, len(l.sent))
	if !ok {
		l.stray.Add(1)
		return
	}
	sent := l.sent[slot].Load()
	if sent == 0 {
		l.stray.Add(1)
		return
	}
	lat := int64(now.Sub(l.base)) - (sent - 1)
	if !l.lat[slot].CompareAndSwap(0, lat+1) {
		return // a repeat (QoS 1 is at least once)
	}
	if !rep.check {
		return
	}
	if !rep.online {
		l.offline.Add(1)
	}
	if l.unknown[slot] {
		if rep.grant || rep.reason != access.ReasonUnknownCard {
			l.wrong.Add(1)
		}
	} else if !rep.grant {
		l.wrong.Add(1)
	}
}

// doorSlot parses a load request ID "t<slot>".
func doorSlot(rid string, n int) (int, bool) {
	s, ok := strings.CutPrefix(rid, "t")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= n {
		return 0, false
	}
	return i, true
}

// doorResult is what a run measured.
type doorResult struct {
	sent    int
	lat     []time.Duration // latencies of the taps answered within doorTimeout
	missing int             // taps not answered within doorTimeout
	wrong   int             // decisions other than the card calls for
	offline int             // decisions under the offline rule
	pubErrs int             // publish calls that failed
	decErrs int             // replies that did not decode
	rate    float64         // taps answered in time per second of load
	lag     []time.Duration // how late each publish call was against its schedule
}

// doorRunLoad runs the open-loop load: each reader taps every
// readers/rate seconds from its own phase in [0, interval) (the same
// phases on every run, so the floor and the site see the same schedule),
// p.rate*p.dur taps in all, a loaded card drawn at random or, with
// probability doorUnknownShare, an unknown one. A reader that falls behind
// its schedule taps at once until it has caught up. Then it waits until
// every tap is answered or doorTimeout has passed since the last one.
func doorRunLoad(ctx context.Context, cs []*doorClient, p doorParams, cardBase uint64, creds int) doorResult {
	per := max(1, int(p.rate*p.dur.Seconds()/float64(len(cs))+0.5))
	interval := time.Duration(float64(time.Second) * float64(len(cs)) / p.rate)
	n := per * len(cs)
	l := &doorLoad{sent: make([]atomic.Int64, n), lat: make([]atomic.Int64, n), unknown: make([]bool, n)}
	lags := make([][]time.Duration, len(cs))
	toks := make([][]paho.Token, len(cs))
	l.base = time.Now()
	start := 20 * time.Millisecond // from base: lets every reader's goroutine start
	for _, c := range cs {
		c.sink.Store(&doorSink{run: l})
	}
	var wg sync.WaitGroup
	for r, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(r)+1, 0x600d))
			phase := time.Duration(rng.Int64N(int64(interval)))
			lags[r] = make([]time.Duration, 0, per)
			toks[r] = make([]paho.Token, 0, per)
			for k := range per {
				at := start + phase + time.Duration(k)*interval
				if d := at - time.Since(l.base); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				slot := r*per + k
				card := cardBase + rng.Uint64N(uint64(creds))
				if rng.Float64() < doorUnknownShare {
					card = doorUnknownBase + rng.Uint64N(1_000_000)
					l.unknown[slot] = true
				}
				b, err := mqttproto.Tap{RequestID: "t" + strconv.Itoa(slot), Door: c.r.door, Card: access.CardNumber(card)}.Marshal()
				if err != nil {
					panic(err) // the tap is built right above
				}
				now := time.Since(l.base)
				lags[r] = append(lags[r], now-at)
				l.sent[slot].Store(int64(now) + 1)
				toks[r] = append(toks[r], c.c.Publish(c.tap, mqttproto.QoS, false, b))
			}
		}()
	}
	wg.Wait()
	var res doorResult
	var last int64
	for i := range l.sent {
		if s := l.sent[i].Load(); s > 0 {
			res.sent++
			last = max(last, s-1)
		}
	}
	// Wait for the stragglers.
	deadline := time.Duration(last) + doorTimeout
	for time.Since(l.base) < deadline && ctx.Err() == nil {
		done := true
		for i := range l.sent {
			if l.sent[i].Load() != 0 && l.lat[i].Load() == 0 {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range cs {
		c.sink.Store(nil)
	}
	for i := range l.sent {
		if l.sent[i].Load() == 0 {
			continue
		}
		lat := time.Duration(l.lat[i].Load() - 1)
		if lat < 0 || lat > doorTimeout {
			res.missing++
			continue
		}
		res.lat = append(res.lat, lat)
	}
	for _, ts := range toks {
		for _, t := range ts {
			if t.WaitTimeout(0) && t.Error() != nil {
				res.pubErrs++
			}
		}
	}
	for _, c := range cs {
		res.decErrs += int(c.decErr.Swap(0))
	}
	for _, ls := range lags {
		res.lag = append(res.lag, ls...)
	}
	res.wrong, res.offline = int(l.wrong.Load()), int(l.offline.Load())
	window := max(p.dur, time.Duration(last)-start)
	res.rate = float64(len(res.lat)) / window.Seconds()
	return res
}

// doorEchoFloor measures the floor: a mochi-mqtt broker configured as the
// edge node's embedded one (default capabilities, its maximum packet size,
// the inline client), but with an allow-all hook (no per-device lookup) and an inline
// subscription to every reader's tap topic that re-publishes each tap, as
// it came, to the reader's decision topic. The same number of readers
// run the same load against it.
func doorEchoFloor(ctx context.Context, site string, p doorParams, log *slog.Logger) (doorResult, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 16 * 1024 // edge/mqttgw's maxPacket
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	defer func() { _ = mqttgw.CloseBroker(srv, "echo") }()
	if err := srv.AddHook(new(doorAllowHook), nil); err != nil {
		return doorResult{}, err
	}
	ln := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "echo", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		return doorResult{}, err
	}
	if err := srv.Serve(); err != nil {
		return doorResult{}, err
	}
	var echoErr atomic.Pointer[error]
	filter := mqttproto.Topic{Site: site, Kind: mqttproto.KindReader, Device: "+", Channel: mqttproto.ChannelTap}.String()
	err := srv.Subscribe(filter, 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		reply := strings.TrimSuffix(pk.TopicName, string(mqttproto.ChannelTap)) + string(mqttproto.ChannelDecision)
		if err := srv.Publish(reply, pk.Payload, false, mqttproto.QoS); err != nil {
			echoErr.CompareAndSwap(nil, &err)
		}
	})
	if err != nil {
		return doorResult{}, err
	}
	// Readers with the same identities and topics as at the site.
	gen := access.NewIDGen(nil)
	var readers []doorReader
	for range p.readers {
		door, err1 := gen.New(time.Now())
		id, err2 := gen.New(time.Now())
		if err := errors.Join(err1, err2); err != nil {
			return doorResult{}, err
		}
		readers = append(readers, doorReader{id: string(id), door: door, secret: "echo"})
	}
	cs, err := doorConnectReaders(ln.Address(), site, readers, doorEchoReply)
	defer doorDisconnect(cs)
	if err != nil {
		return doorResult{}, err
	}
	if err := doorWarmUp(ctx, cs, doorCardBase); err != nil {
		return doorResult{}, err
	}
	res := doorRunLoad(ctx, cs, p, doorCardBase, p.creds)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if e := echoErr.Load(); e != nil {
		return res, fmt.Errorf("echo publish: %w", *e)
	}
	log.Info("door: echo done", "sent", res.sent, "answered", len(res.lat), "missing", res.missing,
		"publish_errors", res.pubErrs, "undecodable", res.decErrs, "send_lag_p99", Percentile(res.lag, 0.99), "send_lag_max", Percentile(res.lag, 1))
	return res, nil
}

// doorAllowHook lets every client connect and publish and subscribe
// anywhere: mochi-mqtt's auth.AllowHook, which cannot be imported here
// (its package needs a module this one does not require).
type doorAllowHook struct{ mqtt.HookBase }

func (h *doorAllowHook) ID() string { return "door-bench-allow-all" }

func (h *doorAllowHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *doorAllowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *doorAllowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
