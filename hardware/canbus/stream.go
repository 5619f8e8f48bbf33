package canbus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/brutella/can"
)

// WireFrameLen is the size of one frame on a stream: the Linux can_frame
// layout that package can marshals (identifier with flags, little-endian
// uint32; length; flags; res0; res1; 8 data bytes).
const WireFrameLen = 16

// MarshalFrame writes f into b, which must hold WireFrameLen bytes, in the
// layout of can.Marshal, without allocating.
func MarshalFrame(b []byte, f can.Frame) {
	_ = b[WireFrameLen-1]
	binary.LittleEndian.PutUint32(b, f.ID)
	b[4], b[5], b[6], b[7] = f.Length, f.Flags, f.Res0, f.Res1
	copy(b[8:16], f.Data[:])
}

// UnmarshalFrame reads a frame from b, which must hold WireFrameLen bytes,
// in the layout of can.Unmarshal.
func UnmarshalFrame(b []byte) can.Frame {
	_ = b[WireFrameLen-1]
	f := can.Frame{ID: binary.LittleEndian.Uint32(b), Length: b[4], Flags: b[5], Res0: b[6], Res1: b[7]}
	copy(f.Data[:], b[8:16])
	return f
}

// Stream is a can.ReadWriteCloser over a byte stream such as a TCP
// connection: the stream bridge that carries a CAN bus between processes
// (the simulator and an edge node, or a test and a gateway). Unlike
// can.NewReadWriteCloser, which reads once per frame and so drops and
// splits frames on a stream, Stream reads exactly WireFrameLen bytes per
// frame, and it serialises writes so that frames from several goroutines
// never interleave.
//
// ReadFrame is for one reader at a time (the bus's read loop); WriteFrame,
// Write and Close are safe for concurrent use. After the peer closes the
// stream, ReadFrame returns io.EOF once and then an error wrapping
// ErrClosed, so that can.Bus's read loop, which treats io.EOF as no error
// and reads again, ends.
type Stream struct {
	conn net.Conn
	r    *bufio.Reader
	rbuf [WireFrameLen]byte

	wmu  sync.Mutex
	wbuf [WireFrameLen]byte

	eof  bool
	once sync.Once
	cerr error
}

// NewStream returns a Stream over conn. The Stream owns conn: Close closes
// it.
func NewStream(conn net.Conn) *Stream {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &Stream{conn: conn, r: bufio.NewReaderSize(conn, 64*WireFrameLen)}
}

// ReadFrame reads the next frame. It returns io.EOF when the peer closed
// the stream at a frame boundary (once; then an error wrapping ErrClosed),
// an error wrapping ErrClosed when the stream ended inside a frame or was
// closed, and the connection's error otherwise. It does not check the
// frame (see DecodeFrame).
func (s *Stream) ReadFrame(f *can.Frame) error {
	if s.eof {
		return errorf(ErrClosed, "stream: read after end of stream")
	}
	if _, err := io.ReadFull(s.r, s.rbuf[:]); err != nil {
		switch {
		case err == io.EOF:
			s.eof = true
			return io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			s.eof = true
			return errorf(ErrClosed, "stream: ended inside a frame")
		case errors.Is(err, net.ErrClosed):
			return errorf(ErrClosed, "stream: %w", err)
		}
		return err
	}
	*f = UnmarshalFrame(s.rbuf[:])
	return nil
}

// WriteFrame writes f as WireFrameLen bytes in one write, under the write
// lock. It returns the connection's error, wrapping ErrClosed when the
// stream is closed.
func (s *Stream) WriteFrame(f can.Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	MarshalFrame(s.wbuf[:], f)
	if _, err := s.conn.Write(s.wbuf[:]); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return errorf(ErrClosed, "stream: %w", err)
		}
		return err
	}
	return nil
}

// Read reads exactly one frame's WireFrameLen bytes into b, which must
// hold them, the way a SocketCAN socket returns one frame per read. It is
// for the same single reader as ReadFrame.
func (s *Stream) Read(b []byte) (int, error) {
	if len(b) < WireFrameLen {
		return 0, io.ErrShortBuffer
	}
	var f can.Frame
	if err := s.ReadFrame(&f); err != nil {
		return 0, err
	}
	MarshalFrame(b, f)
	return WireFrameLen, nil
}

// Write writes whole frames: len(b) must be a multiple of WireFrameLen;
// the frames are written in one write under the write lock.
func (s *Stream) Write(b []byte) (int, error) {
	if len(b)%WireFrameLen != 0 {
		return 0, errorf(ErrBadFrame, "stream: write of %d bytes is not whole frames of %d", len(b), WireFrameLen)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.conn.Write(b)
}

// Close closes the connection. It is idempotent and returns the first
// close's error.
func (s *Stream) Close() error {
	s.once.Do(func() { s.cerr = s.conn.Close() })
	return s.cerr
}

var _ can.ReadWriteCloser = (*Stream)(nil)
