package canbus

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Segment splits message msg into the frames that carry it with
// identifier id: one single frame for 1 to 7 bytes; otherwise a first
// frame and consecutive frames carrying msg followed by its CRC-32 (IEEE,
// big-endian), sequence numbers counting 1, 2, ... 15, 0, 1, ... The
// sender sends the first frame, waits for flow control, and then sends the
// consecutive frames as the receiver's block size and separation time
// allow (Node.Send does this).
//
// It returns an error wrapping ErrTooLarge when msg is longer than
// MaxMessage, ErrBadMessage when it is empty, and ErrBadFrame when id is
// invalid or its type does not travel from id.Src to id.Dst. Segment is
// pure and safe for concurrent use.
func Segment(id FrameID, msg []byte) ([]Frame, error) {
	if err := id.Check(); err != nil {
		return nil, err
	}
	if (id.Dst == GatewayAddr) != id.Type.Up() {
		return nil, errorf(ErrBadFrame, "%s messages do not travel from %s to %s", id.Type, id.Src, id.Dst)
	}
	switch n := len(msg); {
	case n == 0:
		return nil, errorf(ErrBadMessage, "%s: empty message", id.Type)
	case n > MaxMessage:
		return nil, errorf(ErrTooLarge, "%s: %d bytes, more than %d", id.Type, n, MaxMessage)
	case n <= maxSingle:
		f := Frame{ID: id, Len: uint8(1 + n)}
		f.Data[0] = byte(n)
		copy(f.Data[1:], msg)
		return []Frame{f}, nil
	}
	total := len(msg) + crcLen
	buf := make([]byte, total)
	copy(buf, msg)
	binary.BigEndian.PutUint32(buf[len(msg):], crc32.ChecksumIEEE(msg))
	frames := make([]Frame, 0, 1+total/7)
	ff := Frame{ID: id, Len: 8}
	ff.Data[0] = byte(FirstFrame)<<4 | byte(total>>8)
	ff.Data[1] = byte(total)
	copy(ff.Data[2:], buf[:6])
	frames = append(frames, ff)
	for off, seq := 6, byte(1); off < total; off, seq = off+7, (seq+1)&15 {
		n := min(7, total-off)
		cf := Frame{ID: id, Len: uint8(1 + n)}
		cf.Data[0] = byte(ConsecutiveFrame)<<4 | seq
		copy(cf.Data[1:], buf[off:off+n])
		frames = append(frames, cf)
	}
	return frames, nil
}

// FrameCount returns how many frames Segment makes of a message of n bytes
// (1 to MaxMessage), not counting flow control; the result for other n
// means nothing.
func FrameCount(n int) int {
	if n <= maxSingle {
		return 1
	}
	return 1 + (n+crcLen)/7
}

// Defaults of segmentation timing (ISO 15765-2's N_Cr and N_Bs).
const (
	// DefaultTimeout is how long a receiver waits for the next frame of a
	// segmented message before it drops the message with ErrTimeout.
	DefaultTimeout = time.Second
	// DefaultFlowTimeout is how long a sender waits for a flow control
	// frame before it gives the message up with ErrTimeout.
	DefaultFlowTimeout = time.Second
	// MaxWaits is how many flow control frames with status wait in a row a
	// sender accepts before it gives the message up with ErrTimeout.
	MaxWaits = 16
)

// ReassemblerConfig configures a Reassembler. The zero value is usable.
type ReassemblerConfig struct {
	// Timeout is the longest time between two frames of one message
	// (DefaultTimeout when zero).
	Timeout time.Duration
	// BlockSize is the block size the reassembler asks of senders in its
	// flow control frames: after that many consecutive frames a sender
	// waits for the next flow control frame. Zero lets senders send every
	// consecutive frame without waiting.
	BlockSize uint8
	// STmin is the separation time the reassembler asks of senders, 0 to
	// 127 ms.
	STmin time.Duration
	// MaxMessage is the longest message accepted, at most (and by default)
	// the package's MaxMessage; a first frame announcing more is answered
	// with flow status overflow.
	MaxMessage int
}

// Result is what feeding one frame to a Reassembler produced. Any
// combination of its fields may be set: a single frame that interrupts a
// segmented message completes a message and aborts another.
type Result struct {
	// Message is a complete message (without its CRC), or nil. It is not
	// retained by the reassembler.
	Message []byte
	// Reply is a flow control frame to send to the message's sender, or
	// nil.
	Reply *Frame
	// Err reports a message given up or a frame refused, or is nil. A
	// given-up message is dropped whole: no part of it is ever delivered.
	Err error
}

// streamKey identifies one reassembly: one sender's messages of one type
// to one receiver.
type streamKey struct {
	src, dst Addr
	typ      MsgType
}

// streamState is the state of one reassembly.
type streamState uint8

const (
	// receiving: a first frame has come, consecutive frames are expected.
	receiving streamState = iota
	// finished: the last message completed; the last frame is kept to
	// recognise a duplicate of it.
	finished
	// discarding: the message was given up; its remaining consecutive
	// frames are dropped without further errors.
	discarding
)

type stream struct {
	state    streamState
	prio     uint8
	first    Frame  // the first frame, to recognise a repeat
	last     Frame  // the last frame accepted, to recognise a duplicate
	cfs      int    // consecutive frames accepted
	inBlock  int    // consecutive frames since the last flow control
	buf      []byte // transport bytes so far (message and CRC)
	want     int    // transport length announced
	deadline time.Time
}

// Reassembler is the receiving side of segmentation as a pure state
// machine: feed it the frames addressed to one node, in the order they
// came off the bus, with the time they came, and it returns complete
// messages, the flow control frames to send, and errors. It keeps one
// reassembly per (sender, receiver, type).
//
// The rules, for each frame (after Frame.Check):
//
//   - A single frame is a complete message. If a segmented message from the
//     same sender and of the same type was in progress, that message is
//     given up with ErrSequence.
//   - A first frame starts a message and is answered with flow control
//     (continue, the configured block size and separation time), or with
//     overflow and ErrTooLarge when it announces more than MaxMessage. A
//     message in progress is given up with ErrSequence, except that the
//     same first frame again before any consecutive frame restarts the
//     message quietly (a sender retrying after a lost flow control frame).
//   - A consecutive frame must carry the next sequence number (the last
//     plus one, modulo 16) and 7 bytes, or exactly the bytes left for the
//     last frame. A frame equal to the last one accepted is a duplicate and
//     is dropped; any other sequence number gives the message up with
//     ErrSequence (frames were lost or reordered), as does a frame with the
//     last sequence number but other data. A consecutive frame with no
//     message in progress is refused with ErrSequence. After a message is
//     given up or refused, its remaining consecutive frames are dropped
//     quietly (one error per broken message) until the stream's next
//     single or first frame, or until it has been quiet for Timeout.
//   - When the last byte arrives, the CRC-32 is checked (ErrChecksum on a
//     mismatch) and the message is complete. With a block size, every
//     block of that many consecutive frames is answered with flow control.
//   - A message whose next frame does not come within Timeout is given up
//     with ErrTimeout, when Expire runs or when the stream's next frame
//     comes, whichever is first.
//   - Flow control frames are for senders and are refused with
//     ErrSequence; a frame that fails Frame.Check is refused with its
//     error. Neither changes any state.
//
// A Reassembler is not safe for concurrent use; Node serialises access.
type Reassembler struct {
	cfg     ReassemblerConfig
	streams map[streamKey]*stream
}

// NewReassembler returns a Reassembler configured by cfg. It returns an
// error wrapping ErrTooLarge when cfg.MaxMessage is above MaxMessage, and
// ErrBadFrame when cfg.STmin is above 127 ms or a timeout is negative.
func NewReassembler(cfg ReassemblerConfig) (*Reassembler, error) {
	switch {
	case cfg.MaxMessage == 0:
		cfg.MaxMessage = MaxMessage
	case cfg.MaxMessage < 0 || cfg.MaxMessage > MaxMessage:
		return nil, errorf(ErrTooLarge, "reassembler: MaxMessage %d is outside 1..%d", cfg.MaxMessage, MaxMessage)
	}
	if cfg.Timeout < 0 || cfg.STmin < 0 || cfg.STmin > 127*time.Millisecond {
		return nil, errorf(ErrBadFrame, "reassembler: timeout %v or separation time %v out of range", cfg.Timeout, cfg.STmin)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Reassembler{cfg: cfg, streams: map[streamKey]*stream{}}, nil
}

// Pending returns how many segmented messages are in progress.
func (r *Reassembler) Pending() int {
	n := 0
	for _, s := range r.streams {
		if s.state == receiving {
			n++
		}
	}
	return n
}

// Expire gives up every message whose next frame is overdue at now and
// returns one error wrapping ErrTimeout for each, and forgets finished
// streams whose duplicate window has passed.
func (r *Reassembler) Expire(now time.Time) []error {
	var errs []error
	for k, s := range r.streams {
		if !now.After(s.deadline) {
			continue
		}
		if s.state == receiving {
			// Drop the rest of the message quietly for one more timeout.
			errs = append(errs, r.timeoutErr(k, s))
			s.state, s.buf, s.deadline = discarding, nil, now.Add(r.cfg.Timeout)
			continue
		}
		delete(r.streams, k)
	}
	return errs
}

func (r *Reassembler) timeoutErr(k streamKey, s *stream) error {
	return errorf(ErrTimeout, "%s from %s: no frame for %v after byte %d of %d", k.typ, k.src, r.cfg.Timeout, len(s.buf), s.want)
}

// Feed processes frame f, received at now, and returns what it produced.
func (r *Reassembler) Feed(now time.Time, f Frame) Result {
	if err := f.Check(); err != nil {
		return Result{Err: err}
	}
	var res Result
	k := streamKey{src: f.ID.Src, dst: f.ID.Dst, typ: f.ID.Type}
	s := r.streams[k]
	if s != nil && now.After(s.deadline) {
		if s.state == receiving {
			res.Err = r.timeoutErr(k, s)
			s.state, s.buf, s.deadline = discarding, nil, now.Add(r.cfg.Timeout)
		} else {
			delete(r.streams, k)
			s = nil
		}
	}
	abort := func(format string, args ...any) {
		res.Err = errors.Join(res.Err, errorf(ErrSequence, "%s from %s: message of %d bytes given up at byte %d: "+format,
			append([]any{k.typ, k.src, s.want, len(s.buf)}, args...)...))
	}
	switch f.Kind() {
	case FlowControl:
		return Result{Err: errorf(ErrSequence, "%s: a flow control frame is for the sender, not a reassembler", f)}
	case SingleFrame:
		if s != nil && s.state == receiving {
			abort("a single frame came instead of consecutive frame %d", s.cfs+1)
			s.state, s.buf, s.deadline = discarding, nil, now.Add(r.cfg.Timeout)
		} else {
			delete(r.streams, k)
		}
		n := int(f.Data[0] & 0x0F)
		res.Message = append([]byte(nil), f.Data[1:1+n]...)
		return res
	case FirstFrame:
		if s != nil && s.state == receiving {
			if s.cfs == 0 && f == s.first {
				// The sender retries: restart and answer again.
				s.deadline = now.Add(r.cfg.Timeout)
				res.Reply = r.flow(f.ID, FlowContinue)
				return res
			}
			abort("a new first frame came instead of consecutive frame %d", s.cfs+1)
		}
		want := int(f.Data[0]&0x0F)<<8 | int(f.Data[1])
		if want-crcLen > r.cfg.MaxMessage {
			delete(r.streams, k)
			res.Reply = r.flow(f.ID, FlowOverflow)
			res.Err = errors.Join(res.Err, errorf(ErrTooLarge, "%s from %s: first frame announces a message of %d bytes, more than %d",
				k.typ, k.src, want-crcLen, r.cfg.MaxMessage))
			return res
		}
		s = &stream{state: receiving, prio: f.ID.Priority, first: f, last: f, want: want,
			buf: append(make([]byte, 0, want), f.Data[2:8]...), deadline: now.Add(r.cfg.Timeout)}
		r.streams[k] = s
		res.Reply = r.flow(f.ID, FlowContinue)
		return res
	}
	// A consecutive frame.
	if s != nil && f == s.last {
		return res // a duplicate of the last frame accepted: drop it
	}
	if s != nil && s.state == discarding {
		s.deadline = now.Add(r.cfg.Timeout)
		return res
	}
	if s == nil || s.state != receiving {
		// Report the orphan once and drop the rest of its message quietly.
		r.streams[k] = &stream{state: discarding, last: f, deadline: now.Add(r.cfg.Timeout)}
		res.Err = errors.Join(res.Err, errorf(ErrSequence, "%s: consecutive frame from %s with no message in progress (its first frame was lost)", f, k.src))
		return res
	}
	seq := f.Data[0] & 0x0F
	lastSeq := byte(s.cfs & 15)
	data := f.Data[1:f.Len]
	left := s.want - len(s.buf)
	switch {
	case f.ID.Priority != s.prio:
		abort("consecutive frame with priority %d, the message has %d", f.ID.Priority, s.prio)
	case s.cfs > 0 && seq == lastSeq:
		abort("frame %s repeats sequence number %d with other data", f, seq)
	case seq != (lastSeq+1)&15:
		abort("sequence number %d, want %d (frames lost or reordered)", seq, (lastSeq+1)&15)
	case left > 7 && len(data) != 7:
		abort("consecutive frame carries %d bytes, want 7", len(data))
	case left <= 7 && len(data) != left:
		abort("last consecutive frame carries %d bytes, want %d", len(data), left)
	}
	if res.Err != nil {
		s.state, s.buf, s.last = discarding, nil, f
		s.deadline = now.Add(r.cfg.Timeout)
		return res
	}
	s.buf = append(s.buf, data...)
	s.cfs++
	s.inBlock++
	s.last = f
	s.deadline = now.Add(r.cfg.Timeout)
	if len(s.buf) < s.want {
		if r.cfg.BlockSize > 0 && s.inBlock == int(r.cfg.BlockSize) {
			s.inBlock = 0
			res.Reply = r.flow(f.ID, FlowContinue)
		}
		return res
	}
	n := s.want - crcLen
	msg, sum := s.buf[:n], binary.BigEndian.Uint32(s.buf[n:])
	s.state, s.buf = finished, nil
	if got := crc32.ChecksumIEEE(msg); got != sum {
		res.Err = errorf(ErrChecksum, "%s from %s: message of %d bytes has CRC %08x, computed %08x", k.typ, k.src, n, sum, got)
		return res
	}
	res.Message = msg
	return res
}

// flow returns the flow control frame answering frames with identifier id.
func (r *Reassembler) flow(id FrameID, status FlowStatus) *Frame {
	f := FlowControlFrame(id, status, r.cfg.BlockSize, r.cfg.STmin)
	return &f
}
