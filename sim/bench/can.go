package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/brutella/can"
	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

func init() {
	Default.Register(Bench{
		Name: "can",
		Help: "CAN over the TCP stream bridge on loopback: frames/s through canbus.Bus, and segmented tap -> decision round trips through a Gateway, against the same frames over raw TCP",
		Run:  runCAN,
	})
}

// canParams sizes the can benchmark.
type canParams struct {
	frames int // frames sent one way for the throughput
	taps   int // sequential tap -> decision round trips measured
	warm   int // round trips before measuring
}

var (
	canFull  = canParams{frames: 500_000, taps: 20_000, warm: 500}
	canQuick = canParams{frames: 100_000, taps: 3_000, warm: 200}
	// canTest, when set, replaces canQuick (tests keep `make test` short).
	canTest *canParams
)

// canController is the controller address the benchmark's taps come from.
const canController canbus.Addr = 0x11

// canTap returns the i-th tap of the benchmark: a request ID of constant
// length, so every tap is the same number of frames.
func canTap(i int) mqttproto.Tap {
	return mqttproto.Tap{
		RequestID: fmt.Sprintf("d-17:4711:%08d", i),
		Door:      "01JD8X5Q4K3M2N1P0R9S8T7V6W",
		Card:      1234567,
		Time:      time.UnixMilli(1767261600123).UTC(),
	}
}

// canDecide is the gateway's handler: a fixed grant for every tap, so the
// benchmark measures the protocol, not a decision service.
type canDecide struct{}

// HandleTap grants every tap.
func (canDecide) HandleTap(_ context.Context, _ canbus.Addr, t mqttproto.Tap) mqttproto.Decision {
	return mqttproto.Decision{RequestID: t.RequestID, Door: t.Door, Grant: true, Reason: access.ReasonGranted,
		Unlock: 5 * time.Second, Mode: access.Online, Node: "edge-1", Time: t.Time, CacheVersion: 17}
}

// HandleEvent takes every event.
func (canDecide) HandleEvent(context.Context, canbus.Addr, mqttproto.DoorEvent) error { return nil }

// HandleState takes every state.
func (canDecide) HandleState(context.Context, canbus.Addr, mqttproto.State) error { return nil }

// canConnPair returns the two ends of a loopback TCP connection.
func canConnPair(ctx context.Context) (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	var d net.Dialer
	a, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		a.Close()
		return nil, nil, r.err
	}
	for _, c := range []net.Conn{a, r.c} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
	}
	return a, r.c, nil
}

// canBusPair returns two buses joined by the stream bridge over loopback TCP.
func canBusPair(ctx context.Context) (*canbus.Bus, *canbus.Bus, error) {
	a, b, err := canConnPair(ctx)
	if err != nil {
		return nil, nil, err
	}
	return canbus.NewBus(canbus.NewStream(a)), canbus.NewBus(canbus.NewStream(b)), nil
}

// canBusThroughput sends n frames one way through canbus.Bus over the
// stream bridge and returns frames per second, counted at the receiver.
func canBusThroughput(ctx context.Context, n int) (float64, error) {
	tx, rx, err := canBusPair(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Close()
	defer rx.Close()
	var got atomic.Int64
	done := make(chan struct{})
	rx.Subscribe(func(f can.Frame) {
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	f := can.Frame{ID: 0x88010011, Length: 8, Data: [8]byte{0x21, 1, 2, 3, 4, 5, 6, 7}}
	start := time.Now()
	for i := 0; i < n; i++ {
		f.Data[1] = byte(i)
		if err := tx.Publish(f); err != nil {
			return 0, err
		}
	}
	select {
	case <-done:
	case <-rx.Done():
		return 0, fmt.Errorf("can throughput: receiver stopped after %d of %d frames: %w", got.Load(), n, rx.Err())
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("can throughput: %d of %d frames arrived", got.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// canRawThroughput sends the same n 16-byte frames one way over raw TCP
// (one write per frame, reads of exactly 16 bytes through a buffer): the
// floor of the stream bridge.
func canRawThroughput(ctx context.Context, n int) (float64, error) {
	a, b, err := canConnPair(ctx)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(b, 64*canbus.WireFrameLen)
		buf := make([]byte, canbus.WireFrameLen)
		for i := 0; i < n; i++ {
			if _, err := io.ReadFull(r, buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, canbus.WireFrameLen)
	canbus.MarshalFrame(buf, can.Frame{ID: 0x88010011, Length: 8})
	start := time.Now()
	for i := 0; i < n; i++ {
		buf[9] = byte(i)
		if _, err := a.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// canTapRTT runs warm+n sequential taps from a Controller to a Gateway
// over the stream bridge and returns the n measured round trips and the
// frames each took (flow control included).
func canTapRTT(ctx context.Context, p canParams) ([]time.Duration, int, error) {
	site, field, err := canBusPair(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer site.Close()
	defer field.Close()
	g := canbus.NewGateway(site, canDecide{}, canbus.GatewayConfig{})
	if err := g.Open(ctx); err != nil {
		return nil, 0, err
	}
	defer g.Close()
	c, err := canbus.NewController(field, canbus.NodeConfig{Addr: canController}, nil)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	samples := make([]time.Duration, 0, p.taps)
	for i := 0; i < p.warm+p.taps; i++ {
		t := canTap(i)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		d, err := c.Tap(tctx, t)
		elapsed := time.Since(start)
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("can tap %d: %w", i, err)
		}
		if d.RequestID != t.RequestID || !d.Grant {
			return nil, 0, fmt.Errorf("can tap %d: wrong decision %+v", i, d)
		}
		if i >= p.warm {
			samples = append(samples, elapsed)
		}
	}
	gs, cs := g.Stats(), c.Node().Stats()
	if gs.Errors != 0 || cs.Errors != 0 || gs.BadFrames != 0 || cs.BadFrames != 0 {
		return nil, 0, fmt.Errorf("can: receive errors: gateway %+v, controller %+v", gs, cs)
	}
	total := p.warm + p.taps
	return samples, int(gs.FramesIn+cs.FramesIn) / total, nil
}

// canExchange is the frame script of one tap round trip: the frames of the
// tap and of its decision, as sent on the wire.
type canExchange struct {
	tap, decision [][]byte // 16-byte wire frames; [0] is the first frame
	fcUp, fcDown  []byte   // the flow control frames answering them
}

// canScriptFrames returns how many frames a round trip of x takes.
func canScriptFrames(x canExchange) int { return len(x.tap) + len(x.decision) + 2 }

func canScript(i int) (canExchange, error) {
	var x canExchange
	wire := func(f canbus.Frame) []byte {
		b := make([]byte, canbus.WireFrameLen)
		canbus.MarshalFrame(b, f.CAN())
		return b
	}
	t := canTap(i)
	for _, m := range []struct {
		msg      mqttproto.Message
		src, dst canbus.Addr
		out      *[][]byte
		fc       *[]byte
	}{
		{t, canController, canbus.GatewayAddr, &x.tap, &x.fcUp},
		{canDecide{}.HandleTap(context.Background(), canController, t), canbus.GatewayAddr, canController, &x.decision, &x.fcDown},
	} {
		typ, b, err := canbus.Encode(m.msg)
		if err != nil {
			return x, err
		}
		id := canbus.FrameID{Priority: canbus.Priority(m.msg), Type: typ, Dst: m.dst, Src: m.src}
		frames, err := canbus.Segment(id, b)
		if err != nil {
			return x, err
		}
		if len(frames) < 2 {
			return x, errors.New("can: the benchmark's messages must be segmented")
		}
		for _, f := range frames {
			*m.out = append(*m.out, wire(f))
		}
		*m.fc = wire(canbus.FlowControlFrame(id, canbus.FlowContinue, 0, 0))
	}
	return x, nil
}

// canRawRTT replays the frames of a tap round trip over raw TCP, with the
// same waits as the protocol (first frame, flow control, the rest; the
// decision likewise) but no decoding, segmentation or handler: the floor of
// the round trip over the stream bridge.
func canRawRTT(ctx context.Context, p canParams) ([]time.Duration, error) {
	x, err := canScript(0)
	if err != nil {
		return nil, err
	}
	a, b, err := canConnPair(ctx)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	defer b.Close()
	// The site's side.
	go func() {
		r := bufio.NewReaderSize(b, 64*canbus.WireFrameLen)
		buf := make([]byte, canbus.WireFrameLen)
		read := func(n int) error {
			for ; n > 0; n-- {
				if _, err := io.ReadFull(r, buf); err != nil {
					return err
				}
			}
			return nil
		}
		for {
			if read(1) != nil { // tap FF
				return
			}
			b.Write(x.fcUp)
			if read(len(x.tap)-1) != nil { // tap CFs
				return
			}
			b.Write(x.decision[0])
			if read(1) != nil { // FC
				return
			}
			for _, f := range x.decision[1:] {
				b.Write(f)
			}
		}
	}()
	r := bufio.NewReaderSize(a, 64*canbus.WireFrameLen)
	buf := make([]byte, canbus.WireFrameLen)
	read := func(n int) error {
		for ; n > 0; n-- {
			if _, err := io.ReadFull(r, buf); err != nil {
				return err
			}
		}
		return nil
	}
	samples := make([]time.Duration, 0, p.taps)
	for i := 0; i < p.warm+p.taps && ctx.Err() == nil; i++ {
		start := time.Now()
		if _, err := a.Write(x.tap[0]); err != nil {
			return nil, err
		}
		if err := read(1); err != nil {
			return nil, err
		}
		for _, f := range x.tap[1:] {
			if _, err := a.Write(f); err != nil {
				return nil, err
			}
		}
		if err := read(1); err != nil {
			return nil, err
		}
		if _, err := a.Write(x.fcDown); err != nil {
			return nil, err
		}
		if err := read(len(x.decision) - 1); err != nil {
			return nil, err
		}
		if i >= p.warm {
			samples = append(samples, time.Since(start))
		}
	}
	return samples, ctx.Err()
}

// runCAN measures the CAN protocol over the stream bridge (TCP loopback):
//
//   - frames_per_s: frames sent one way through canbus.Bus (serialised
//     writes, exactly 16 bytes read per frame, the subscription
//     dispatcher), against the same frames written and read over raw TCP;
//   - tap_rtt_p50_us, tap_rtt_p99_us: a Controller's tap to a Gateway
//     (segmented, with flow control) and the decision back (segmented),
//     sequentially, against a raw replay of exactly those frames with the
//     same waits over TCP;
//   - tap_frames: the frames of one round trip (no floor).
func runCAN(ctx context.Context, opt Options, emit func(Result)) error {
	p := canFull
	if opt.Quick {
		p = canQuick
		if canTest != nil {
			p = *canTest
		}
	}
	// Alternate the two twice and keep the best of each, so that neither
	// gains from running second (a warm scheduler and TCP stack).
	var raw, bus float64
	for range 2 {
		r, err := canRawThroughput(ctx, p.frames)
		if err != nil {
			return fmt.Errorf("raw throughput: %w", err)
		}
		b, err := canBusThroughput(ctx, p.frames)
		if err != nil {
			return fmt.Errorf("bus throughput: %w", err)
		}
		raw, bus = max(raw, r), max(bus, b)
	}
	emit(NewResult("can", "frames_per_s", bus, "frames/s", raw))

	floor, err := canRawRTT(ctx, p)
	if err != nil {
		return fmt.Errorf("raw round trip: %w", err)
	}
	rtt, frames, err := canTapRTT(ctx, p)
	if err != nil {
		return err
	}
	x, _ := canScript(0)
	if want := canScriptFrames(x); frames != want {
		return fmt.Errorf("can: a round trip took %d frames, the raw replay %d", frames, want)
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"tap_rtt_p50_us", 0.50}, {"tap_rtt_p99_us", 0.99}} {
		emit(NewResult("can", q.name, Micros(Percentile(rtt, q.q)), "us", Micros(Percentile(floor, q.q))))
	}
	emit(NewResult("can", "tap_frames", float64(frames), "frames", 0))
	return nil
}
