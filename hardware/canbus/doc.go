// Package canbus is Gatehouse's CAN device protocol: how door controllers
// on a CAN bus talk to their site's gateway. It carries the same messages
// as the MQTT protocol (package mqttproto: taps, decisions, door events
// with their per-device sequence numbers, door commands including the
// offline cache, and the controller's state) in a compact binary encoding
// over classic CAN frames of 8 bytes. docs/protocol-can.md is the same
// protocol written for device vendors.
//
// The layers, bottom up:
//
//   - Transports (Bus): SocketCAN through github.com/brutella/can
//     (OpenSocketCAN, Config), the stream bridge that carries frames over
//     TCP (Stream, Hub), and an in-memory pipe for tests (NewPipe). Bus
//     wraps can.Bus and avoids its traps (see Bus).
//   - Frames (FrameID, Frame, DecodeFrame): 29-bit extended identifiers
//     holding a priority, the message type and the destination and source
//     addresses; standard, remote and error frames are refused.
//   - Segmentation (Segment, Reassembler): ISO 15765-2 (ISO-TP) framing
//     with flow control, so that a vendor can use an off-the-shelf ISO-TP
//     stack; a message longer than 7 bytes carries a CRC-32, so lost,
//     duplicated or reordered frames give an error, never a wrong message.
//   - Messages (Encode, Decode and the per-message functions): version
//     byte, fixed fields, flags for optional ones; each decoder checks
//     lengths strictly and then the mqttproto schema (Validate).
//   - Endpoints: Node sends and receives messages at one address; Gateway
//     is the site's end, bridging the bus to a Handler the edge implements;
//     Controller is the door controller's end, for the simulator and tests.
//
// Every error is an *access.Error (see the sentinels such as ErrBadFrame);
// bad input gets a clear error and changes nothing. Encoding, decoding,
// Segment and FrameID are pure and safe for concurrent use; the concurrency
// of each type is stated on it.
package canbus
