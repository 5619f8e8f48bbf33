package canbus

import (
	"io"
	"sync"

	"github.com/brutella/can"
)

// MaxPipeQueue is the most frames a Pipe end holds unread; a write beyond
// it fails (a real bus would lose the frame too).
const MaxPipeQueue = 1 << 16

// pipeQueue is one direction of a Pipe: an unbounded-but-capped FIFO of
// frames.
type pipeQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frames []can.Frame
	head   int
	closed bool
}

func newPipeQueue() *pipeQueue {
	q := &pipeQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *pipeQueue) push(f can.Frame) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errorf(ErrClosed, "pipe: write on a closed pipe")
	}
	if len(q.frames)-q.head >= MaxPipeQueue {
		return errorf(ErrClosed, "pipe: %d frames unread, the reader is stuck", MaxPipeQueue)
	}
	if q.head > 0 && q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	}
	q.frames = append(q.frames, f)
	q.cond.Signal()
	return nil
}

func (q *pipeQueue) pop(f *can.Frame) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.frames) && !q.closed {
		q.cond.Wait()
	}
	if q.head == len(q.frames) {
		return errorf(ErrClosed, "pipe: closed")
	}
	*f = q.frames[q.head]
	q.frames[q.head] = can.Frame{}
	q.head++
	return nil
}

func (q *pipeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// pipeEnd is one end of a Pipe.
type pipeEnd struct {
	in, out *pipeQueue
	once    sync.Once
}

// NewPipe returns the two ends of an in-memory, message-preserving,
// buffered frame pipe: a frame written to one end is read from the other,
// in order. Writes never wait for the reader (unlike net.Pipe, whose
// synchronous writes deadlock a handler that answers on the same pipe);
// an end holds up to MaxPipeQueue unread frames. Closing either end closes
// both: reads return the frames still queued and then an error wrapping
// ErrClosed, writes fail with ErrClosed. Both ends are safe for concurrent
// use.
func NewPipe() (can.ReadWriteCloser, can.ReadWriteCloser) {
	ab, ba := newPipeQueue(), newPipeQueue()
	return &pipeEnd{in: ba, out: ab}, &pipeEnd{in: ab, out: ba}
}

// ReadFrame reads the next frame, waiting for one.
func (p *pipeEnd) ReadFrame(f *can.Frame) error { return p.in.pop(f) }

// WriteFrame queues f for the other end without waiting.
func (p *pipeEnd) WriteFrame(f can.Frame) error { return p.out.push(f) }

// Read reads one frame's WireFrameLen bytes into b.
func (p *pipeEnd) Read(b []byte) (int, error) {
	if len(b) < WireFrameLen {
		return 0, io.ErrShortBuffer
	}
	var f can.Frame
	if err := p.ReadFrame(&f); err != nil {
		return 0, err
	}
	MarshalFrame(b, f)
	return WireFrameLen, nil
}

// Write writes whole frames of WireFrameLen bytes.
func (p *pipeEnd) Write(b []byte) (int, error) {
	if len(b)%WireFrameLen != 0 {
		return 0, errorf(ErrBadFrame, "pipe: write of %d bytes is not whole frames of %d", len(b), WireFrameLen)
	}
	for i := 0; i < len(b); i += WireFrameLen {
		if err := p.WriteFrame(UnmarshalFrame(b[i:])); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// Close closes both directions; it is idempotent.
func (p *pipeEnd) Close() error {
	p.once.Do(func() { p.in.close(); p.out.close() })
	return nil
}
