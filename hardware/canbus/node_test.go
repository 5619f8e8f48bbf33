package canbus

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/brutella/can"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// rawPeer is a bus end driven frame by frame by a test, acting as the
// receiver at address 0x0A.
func rawPeer(t *testing.T) (node *Node, peer *Bus, frames chan Frame) {
	t.Helper()
	x, y := NewPipe()
	site, peer := NewBus(x), NewBus(y)
	t.Cleanup(func() { site.Close(); peer.Close() })
	frames = make(chan Frame, 1000)
	peer.Subscribe(func(cf can.Frame) {
		f, err := DecodeFrame(cf)
		if err != nil {
			t.Errorf("peer got a bad frame: %v", err)
			return
		}
		frames <- f
	})
	node, err := NewNode(site, NodeConfig{FlowTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node, peer, frames
}

func next(t *testing.T, frames chan Frame) Frame {
	t.Helper()
	select {
	case f := <-frames:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame")
		return Frame{}
	}
}

var ackMsg = bytes.Repeat([]byte{0xAB}, 100) // 104 bytes: FF + 14 CFs

func TestSendFlowControl(t *testing.T) {
	t.Run("blocks and separation time", func(t *testing.T) {
		node, peer, frames := rawPeer(t)
		done := make(chan error, 1)
		go func() { done <- node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, ackMsg) }()
		ff := next(t, frames)
		if ff.Kind() != FirstFrame {
			t.Fatalf("first %s", ff)
		}
		r := mustReassembler(t, ReassemblerConfig{})
		r.Feed(time.Now(), ff)
		// Blocks of 4, with a wait in front of the second block.
		peer.Publish(FlowControlFrame(ff.ID, FlowContinue, 4, 2*time.Millisecond).CAN())
		var got []byte
		for block := 0; got == nil; block++ {
			n := 0
			var start time.Time
			for n < 4 && got == nil {
				f := next(t, frames)
				if n == 0 {
					start = time.Now()
				}
				res := r.Feed(time.Now(), f)
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				got = res.Message
				n++
			}
			if n == 4 && time.Since(start) < 6*time.Millisecond {
				t.Fatalf("block %d of 4 frames in %v, want at least 3 separation times of 2 ms", block, time.Since(start))
			}
			if got == nil {
				select {
				case f := <-frames:
					t.Fatalf("frame %s before flow control", f)
				case <-time.After(20 * time.Millisecond):
				}
				if block == 0 {
					peer.Publish(FlowControlFrame(ff.ID, FlowWait, 0, 0).CAN())
				}
				peer.Publish(FlowControlFrame(ff.ID, FlowContinue, 4, 2*time.Millisecond).CAN())
			}
		}
		if !bytes.Equal(got, ackMsg) {
			t.Fatal("wrong message")
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := node.Stats(); st.MessagesOut != 1 || st.FramesOut != 15 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("overflow", func(t *testing.T) {
		node, peer, frames := rawPeer(t)
		done := make(chan error, 1)
		go func() { done <- node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, ackMsg) }()
		ff := next(t, frames)
		peer.Publish(FlowControlFrame(ff.ID, FlowOverflow, 0, 0).CAN())
		checkError(t, <-done, ErrOverflow)
	})
	t.Run("no flow control", func(t *testing.T) {
		node, _, frames := rawPeer(t)
		start := time.Now()
		err := node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, ackMsg)
		checkError(t, err, ErrTimeout)
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("gave up after %v", d)
		}
		if len(frames) != 1 {
			t.Fatalf("%d frames sent", len(frames))
		}
	})
	t.Run("too many waits", func(t *testing.T) {
		node, peer, frames := rawPeer(t)
		done := make(chan error, 1)
		go func() { done <- node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, ackMsg) }()
		ff := next(t, frames)
		for range MaxWaits + 1 {
			peer.Publish(FlowControlFrame(ff.ID, FlowWait, 0, 0).CAN())
			time.Sleep(time.Millisecond)
		}
		checkError(t, <-done, ErrTimeout)
	})
	t.Run("context", func(t *testing.T) {
		node, _, _ := rawPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := node.SendBytes(ctx, 0x0A, PrioAck, TypeAck, ackMsg); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("node closed", func(t *testing.T) {
		node, _, _ := rawPeer(t)
		done := make(chan error, 1)
		go func() { done <- node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, ackMsg) }()
		time.Sleep(10 * time.Millisecond)
		node.Close()
		checkError(t, <-done, ErrClosed)
		checkError(t, node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, []byte{1}), ErrClosed)
	})
	t.Run("refused before sending", func(t *testing.T) {
		node, _, frames := rawPeer(t)
		checkError(t, node.SendBytes(context.Background(), 0x0A, PrioTap, TypeTap, []byte{1}), ErrBadFrame)
		checkError(t, node.SendBytes(context.Background(), 0xFF, PrioAck, TypeAck, []byte{1}), ErrBadFrame)
		checkError(t, node.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, make([]byte, MaxMessage+1)), ErrTooLarge)
		checkError(t, node.Send(context.Background(), 0x0A, mqttproto.DoorCmd{Type: mqttproto.DoorAck}), ErrBadMessage)
		if len(frames) != 0 {
			t.Fatal("frames sent")
		}
	})
}

// TestSendSerialisesStreams: messages of one type to one peer from many
// goroutines go one after the other; the receiver gets each whole.
func TestSendSerialisesStreams(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	defer a.Close()
	defer b.Close()
	var mu sync.Mutex
	got := map[uint64]bool{}
	var errs []error
	rx, err := NewNode(b, NodeConfig{Addr: 0x0A, OnError: func(_ Addr, err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }},
		func(r Received) {
			mu.Lock()
			got[r.Msg.(mqttproto.DoorCmd).Seq] = true
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := NewNode(a, NodeConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				seq := uint64(g*100 + i + 1)
				c := mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack-with-a-long-request-id-" + Addr(g).String(), Seq: seq}
				if err := tx.Send(context.Background(), 0x0A, c); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 200 })
	if len(errs) != 0 {
		t.Fatal(errs)
	}
}

// TestNodeIgnoresOthers: a node refuses frames of other protocols (counted)
// and ignores frames for other addresses.
func TestNodeIgnoresOthers(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	defer a.Close()
	defer b.Close()
	n, err := NewNode(b, NodeConfig{Addr: 0x0A}, func(Received) { t.Error("message delivered") })
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a.Publish(can.Frame{ID: 0x123, Length: 1})              // standard frame
	a.Publish(can.Frame{ID: 0x123 | can.MaskRtr})           // RTR
	other := FrameID{Priority: 4, Type: TypeAck, Dst: 0x0B} // for 0x0B
	a.Publish(Frame{ID: other, Len: 2, Data: [8]byte{0x01, 0x01}}.CAN())
	waitFor(t, func() bool { return b.FramesRead() == 3 })
	if st := n.Stats(); st.BadFrames != 2 || st.FramesIn != 0 || st.MessagesIn != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := NewNode(b, NodeConfig{Addr: 0xFF}, nil); err == nil {
		t.Fatal("address ff accepted")
	}
}

// TestNodeReportsBadMessage: a message that reassembles but does not
// decode is reported, not delivered.
func TestNodeReportsBadMessage(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	n, err := NewNode(b, NodeConfig{Addr: 0x0A, OnError: func(_ Addr, err error) { errc <- err }}, func(Received) { t.Error("delivered") })
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tx, _ := NewNode(a, NodeConfig{}, nil)
	defer tx.Close()
	if err := tx.SendBytes(context.Background(), 0x0A, PrioAck, TypeAck, []byte{0x02, 0x00}); err != nil {
		t.Fatal(err)
	}
	checkError(t, <-errc, ErrVersion)
}
