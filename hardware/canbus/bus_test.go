package canbus

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brutella/can"
)

// TestBusWaitDoesNotLeak: a Wait that times out leaves nothing subscribed,
// so later frames with the awaited ID flow on (can.Wait would block the
// read loop here).
func TestBusWaitDoesNotLeak(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	defer a.Close()
	defer b.Close()
	want := func(f can.Frame) bool { return f.ID == 0x123 }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Wait(ctx, want); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v", err)
	}
	var n atomic.Int64
	b.Subscribe(func(can.Frame) { n.Add(1) })
	for range 10 {
		if err := a.Publish(can.Frame{ID: 0x123, Length: 1}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return n.Load() == 10 })

	// A matching frame is returned once; more matching frames do not block.
	got := make(chan can.Frame, 1)
	go func() {
		f, err := b.Wait(context.Background(), want)
		if err != nil {
			t.Error(err)
		}
		got <- f
	}()
	waitFor(t, func() bool { return len(*b.list.Load()) == 2 })
	for range 5 {
		a.Publish(can.Frame{ID: 0x123, Length: 2})
	}
	if f := <-got; f.Length != 2 {
		t.Fatalf("waited frame %+v", f)
	}
	waitFor(t, func() bool { return n.Load() == 15 })
}

func TestBusUnsubscribe(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	defer a.Close()
	defer b.Close()
	var n1, n2 atomic.Int64
	un1 := b.Subscribe(func(can.Frame) { n1.Add(1) })
	b.Subscribe(func(can.Frame) { n2.Add(1) })
	a.Publish(can.Frame{ID: 1})
	waitFor(t, func() bool { return n1.Load() == 1 && n2.Load() == 1 })
	un1()
	un1()
	a.Publish(can.Frame{ID: 1})
	waitFor(t, func() bool { return n2.Load() == 2 })
	if n1.Load() != 1 {
		t.Fatal("unsubscribed handler still called")
	}
	if b.FramesRead() != 2 {
		t.Fatalf("FramesRead %d", b.FramesRead())
	}
}

func TestBusClose(t *testing.T) {
	x, y := NewPipe()
	a, b := NewBus(x), NewBus(y)
	if b.Err() != nil {
		t.Fatal("Err before close")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	checkError(t, a.Publish(can.Frame{}), ErrClosed)
	<-a.Done()
	checkError(t, a.Err(), ErrClosed)
	// The peer sees the pipe end.
	<-b.Done()
	checkError(t, b.Err(), ErrClosed)
	if _, err := b.Wait(context.Background(), func(can.Frame) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait on a closed bus: %v", err)
	}
	b.Close()
}

// TestStreamPeerGone: when the TCP peer goes away, the bus's read loop
// ends (can.Bus treats io.EOF as no error and would read again).
func TestStreamPeerGone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write []byte
	}{
		{"at a frame boundary", nil},
		{"inside a frame", []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					c.Write(tc.write)
					c.Close()
				}
			}()
			b, err := Open(context.Background(), Config{Transport: TransportTCP, Address: ln.Addr().String()})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			select {
			case <-b.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("read loop still running")
			}
			checkError(t, b.Err(), ErrClosed)
		})
	}
}

func TestStreamWholeFrames(t *testing.T) {
	c1, c2 := net.Pipe()
	s := NewStream(c1)
	defer s.Close()
	checkError(t, func() error { _, err := s.Write(make([]byte, 17)); return err }(), ErrBadFrame)
	if _, err := s.Read(make([]byte, 15)); err == nil {
		t.Fatal("short buffer accepted")
	}
	go func() {
		buf := make([]byte, WireFrameLen)
		MarshalFrame(buf, can.Frame{ID: 7, Length: 1})
		// One frame in three writes: Read still returns it whole.
		c2.Write(buf[:5])
		c2.Write(buf[5:9])
		c2.Write(buf[9:])
	}()
	buf := make([]byte, 64)
	n, err := s.Read(buf)
	if err != nil || n != WireFrameLen || UnmarshalFrame(buf).ID != 7 {
		t.Fatalf("Read: %d %v %+v", n, err, UnmarshalFrame(buf))
	}
}

func TestPipeWholeFrames(t *testing.T) {
	x, y := NewPipe()
	buf := make([]byte, 2*WireFrameLen)
	MarshalFrame(buf, can.Frame{ID: 1})
	MarshalFrame(buf[WireFrameLen:], can.Frame{ID: 2})
	if n, err := x.Write(buf); err != nil || n != len(buf) {
		t.Fatal(n, err)
	}
	for want := uint32(1); want <= 2; want++ {
		if n, err := y.Read(buf); err != nil || n != WireFrameLen || UnmarshalFrame(buf).ID != want {
			t.Fatalf("Read: %d %v", n, err)
		}
	}
	checkError(t, func() error { _, err := x.Write(buf[:3]); return err }(), ErrBadFrame)
	x.Close()
	checkError(t, y.WriteFrame(can.Frame{}), ErrClosed)
	checkError(t, y.ReadFrame(&can.Frame{}), ErrClosed)
}
