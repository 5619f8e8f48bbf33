package canbus

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brutella/can"
)

// CloseWait is how long Bus.Close waits for the read loop to end. A
// SocketCAN read blocked in the kernel does not end when the socket is
// closed, so Close does not wait for it forever.
const CloseWait = time.Second

// Bus is a CAN bus: a can.Bus with a subscription list that is safe to
// change at any time, a waiter that does not leak, serialised writes, and
// an idempotent Close. It works around the traps of package can v0.0.2:
// its handler list has no lock (Bus subscribes its single dispatcher
// before it starts the read loop and keeps its own, locked list), can.Wait
// leaves its filter subscribed after a timeout (Bus.Wait unsubscribes on
// every return), and can.Bus.ConnectAndPublish blocks (Bus runs it in its
// own goroutine, started by the constructor).
//
// Handlers run on the read loop, one frame at a time, in the order frames
// come off the bus; a handler must not block, or it stalls every other
// handler. Publish does not loop back to this Bus's own handlers (as on a
// real CAN interface). All methods are safe for concurrent use.
type Bus struct {
	bus *can.Bus

	wmu sync.Mutex // serialises Publish

	mu     sync.Mutex
	nextID uint64
	subs   map[uint64]func(can.Frame)
	list   atomic.Pointer[[]func(can.Frame)]

	done      chan struct{}
	err       error // why the read loop ended; set before done closes
	closing   atomic.Bool
	closeOnce sync.Once

	frames atomic.Uint64
}

// NewBus returns a Bus over rwc (a Stream, a Pipe end, or any
// can.ReadWriteCloser) and starts reading. The Bus owns rwc: Close closes
// it.
func NewBus(rwc can.ReadWriteCloser) *Bus { return wrap(can.NewBus(rwc)) }

// OpenSocketCAN opens the SocketCAN interface named iface (such as "can0"
// or "vcan0") with can.NewBusForInterfaceWithName and returns a Bus over
// it. It returns the library's error when the interface does not exist or
// the socket cannot be bound (Linux only; this needs the can and can_raw
// kernel modules).
func OpenSocketCAN(iface string) (*Bus, error) {
	b, err := can.NewBusForInterfaceWithName(iface)
	if err != nil {
		return nil, err
	}
	return wrap(b), nil
}

// wrap subscribes the dispatcher to cb before starting its read loop:
// can.Bus's handler list has no lock, so this is the only time it is
// touched.
func wrap(cb *can.Bus) *Bus {
	b := &Bus{bus: cb, subs: map[uint64]func(can.Frame){}, done: make(chan struct{})}
	b.list.Store(&[]func(can.Frame){})
	cb.SubscribeFunc(b.dispatch)
	go func() {
		err := cb.ConnectAndPublish()
		if b.closing.Load() || err == nil || errors.Is(err, io.EOF) {
			err = errorf(ErrClosed, "bus closed")
		} else if !errors.Is(err, ErrClosed) {
			err = errorf(ErrClosed, "bus read: %w", err)
		}
		b.err = err
		close(b.done)
	}()
	return b
}

func (b *Bus) dispatch(f can.Frame) {
	b.frames.Add(1)
	for _, h := range *b.list.Load() {
		h(f)
	}
}

// Subscribe adds handler h, which from now on receives every frame read
// from the bus (valid or not: see DecodeFrame), and returns a function
// that removes it. h runs on the read loop and must not block. The remove
// function is idempotent; h may still be running, or run once more, while
// it is called.
func (b *Bus) Subscribe(h func(can.Frame)) (unsubscribe func()) {
	b.mu.Lock()
	id := b.nextID
	b.nextID++
	b.subs[id] = h
	b.publishList()
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.publishList()
		b.mu.Unlock()
	}
}

// publishList stores a fresh copy of the handler list, in subscription
// order; b.mu is held.
func (b *Bus) publishList() {
	ids := make([]uint64, 0, len(b.subs))
	for id := range b.subs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	list := make([]func(can.Frame), len(ids))
	for i, id := range ids {
		list[i] = b.subs[id]
	}
	b.list.Store(&list)
}

// Wait returns the first frame read from now on for which match reports
// true, or an error when ctx ends first (ctx.Err()) or the bus closes
// (wrapping ErrClosed). match runs on the read loop and must not block. The
// waiter is removed on every return, so a later frame never blocks the
// read loop.
func (b *Bus) Wait(ctx context.Context, match func(can.Frame) bool) (can.Frame, error) {
	ch := make(chan can.Frame, 1)
	unsub := b.Subscribe(func(f can.Frame) {
		if match(f) {
			select {
			case ch <- f:
			default: // already matched once
			}
		}
	})
	defer unsub()
	select {
	case f := <-ch:
		return f, nil
	case <-ctx.Done():
		return can.Frame{}, ctx.Err()
	case <-b.done:
		return can.Frame{}, b.err
	}
}

// Publish writes frame f to the bus. Writes are serialised, so frames from
// several goroutines never interleave on a stream. It returns an error
// wrapping ErrClosed after Close, and the transport's error otherwise.
func (b *Bus) Publish(f can.Frame) error {
	if b.closing.Load() {
		return errorf(ErrClosed, "publish on a closed bus")
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.bus.Publish(f)
}

// Done is closed when the read loop has ended: after Close, or when the
// transport failed or its peer went away.
func (b *Bus) Done() <-chan struct{} { return b.done }

// Err returns why the read loop ended (an error wrapping ErrClosed, and
// the transport's error when it failed), or nil while it runs.
func (b *Bus) Err() error {
	select {
	case <-b.done:
		return b.err
	default:
		return nil
	}
}

// FramesRead returns how many frames the read loop has received.
func (b *Bus) FramesRead() uint64 { return b.frames.Load() }

// Close closes the transport and waits up to CloseWait for the read loop
// to end. It is idempotent; it returns the transport's close error the
// first time and nil after.
func (b *Bus) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		err = b.bus.Disconnect()
		t := time.NewTimer(CloseWait)
		defer t.Stop()
		select {
		case <-b.done:
		case <-t.C:
		}
	})
	return err
}
