package canbus

import (
	"fmt"
	"strconv"

	"github.com/brutella/can"
)

// Addr is a node address on one CAN bus: GatewayAddr for the site's
// gateway, 1 to MaxControllerAddr for door controllers. Addresses are local
// to a bus; the site's configuration maps each (bus, address) to a device.
type Addr uint8

const (
	// GatewayAddr is the address of the site's gateway. Every message has
	// the gateway at one end and a controller at the other.
	GatewayAddr Addr = 0x00
	// MaxControllerAddr is the highest controller address. 0xFF is
	// reserved and refused.
	MaxControllerAddr Addr = 0xFE
)

// IsController reports whether a is a valid controller address (1..254).
func (a Addr) IsController() bool { return a >= 1 && a <= MaxControllerAddr }

// String returns a as two hexadecimal digits, the way candump shows it.
func (a Addr) String() string { return fmt.Sprintf("%02x", uint8(a)) }

// MsgType is the message type in a frame identifier. Each type travels in
// one direction (Up: controller to gateway, or down: gateway to
// controller); its flow control frames travel the other way.
type MsgType uint8

// The message types of version 1. Any other value is refused with
// ErrBadFrame.
const (
	// TypeTap carries an mqttproto.Tap, controller to gateway.
	TypeTap MsgType = 0x01
	// TypeDecision carries an mqttproto.Decision, gateway to controller.
	TypeDecision MsgType = 0x02
	// TypeEvent carries an mqttproto.DoorEvent, controller to gateway.
	TypeEvent MsgType = 0x03
	// TypeState carries a door controller's mqttproto.State, controller to
	// gateway.
	TypeState MsgType = 0x04
	// TypeUnlock carries an unlock mqttproto.DoorCmd, gateway to controller.
	TypeUnlock MsgType = 0x10
	// TypeSetMode carries a set_mode mqttproto.DoorCmd, gateway to
	// controller.
	TypeSetMode MsgType = 0x11
	// TypeOfflineCache carries an offline_cache mqttproto.DoorCmd (one
	// part of a cache version), gateway to controller.
	TypeOfflineCache MsgType = 0x12
	// TypeAck carries an ack mqttproto.DoorCmd, gateway to controller.
	TypeAck MsgType = 0x13
	// TypeHeartbeat carries a heartbeat mqttproto.DoorCmd, gateway to
	// controller.
	TypeHeartbeat MsgType = 0x14
)

var typeNames = map[MsgType]string{
	TypeTap: "tap", TypeDecision: "decision", TypeEvent: "event", TypeState: "state",
	TypeUnlock: "unlock", TypeSetMode: "set_mode", TypeOfflineCache: "offline_cache",
	TypeAck: "ack", TypeHeartbeat: "heartbeat",
}

// Types returns every message type of version 1 in ascending order.
func Types() []MsgType {
	return []MsgType{TypeTap, TypeDecision, TypeEvent, TypeState,
		TypeUnlock, TypeSetMode, TypeOfflineCache, TypeAck, TypeHeartbeat}
}

// Valid reports whether t is a message type of version 1.
func (t MsgType) Valid() bool { _, ok := typeNames[t]; return ok }

// Up reports whether messages of type t travel from a controller to the
// gateway (tap, event, state); the others travel from the gateway down.
func (t MsgType) Up() bool { return t == TypeTap || t == TypeEvent || t == TypeState }

// String returns t's name, such as "tap", or "type(0xNN)" for an unknown
// type.
func (t MsgType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "type(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// Priorities. The priority is the top of the identifier, so a lower value
// wins arbitration on the bus. Encode picks one per message (see Priority);
// receivers accept any.
const (
	// PrioRevocation is for traffic that takes access away: a lockdown
	// (set_mode locked) and an offline cache delta that removes cards.
	PrioRevocation uint8 = 0
	// PrioAlarm is for alarm events: forced_open, held_open, tamper,
	// fail_secure.
	PrioAlarm uint8 = 1
	// PrioTap is for taps and decisions, which a person is waiting for.
	PrioTap uint8 = 2
	// PrioCommand is for unlock and other set_mode commands and for
	// events that are not alarms.
	PrioCommand uint8 = 3
	// PrioAck is for acks and state.
	PrioAck uint8 = 4
	// PrioCache is for offline cache parts that remove nothing.
	PrioCache uint8 = 5
	// PrioHeartbeat is for heartbeats.
	PrioHeartbeat uint8 = 6
	// MaxPriority is the lowest priority (the highest value); version 1
	// does not use it.
	MaxPriority uint8 = 7
)

// Layout of the 29-bit identifier:
//
//	28..26 priority | 25..24 reserved (0) | 23..16 type | 15..8 destination | 7..0 source
const (
	prioShift  = 26
	rsvdMask   = 0x3 << 24
	typeShift  = 16
	dstShift   = 8
	idBits     = can.MaskIDEff
	rawEffFlag = can.MaskEff
)

// FrameID is the decoded 29-bit extended identifier of a frame. Every frame
// of one message, and the flow control frames answering it, carry the same
// Priority and Type; flow control swaps Src and Dst.
type FrameID struct {
	// Priority is 0 (highest) to 7.
	Priority uint8
	// Type is the message type.
	Type MsgType
	// Dst is the receiver's address.
	Dst Addr
	// Src is the sender's address.
	Src Addr
}

// Check reports whether id is an identifier this protocol sends: priority
// 0..7, a known type, and one end the gateway and the other a controller.
// It does not check the direction, which depends on the frame's kind (see
// Frame.Check). It returns an error wrapping ErrBadFrame.
func (id FrameID) Check() error {
	if id.Priority > MaxPriority {
		return errorf(ErrBadFrame, "priority %d is above %d", id.Priority, MaxPriority)
	}
	if !id.Type.Valid() {
		return errorf(ErrBadFrame, "unknown message type 0x%02x", uint8(id.Type))
	}
	switch {
	case id.Src == GatewayAddr && id.Dst.IsController(), id.Dst == GatewayAddr && id.Src.IsController():
		return nil
	default:
		return errorf(ErrBadFrame, "source %s and destination %s: want the gateway (00) and a controller (01..fe)", id.Src, id.Dst)
	}
}

// Raw returns id as a 29-bit identifier value, without the extended-frame
// flag (can.MaskEff); it does not check id.
func (id FrameID) Raw() uint32 {
	return uint32(id.Priority&7)<<prioShift | uint32(id.Type)<<typeShift | uint32(id.Dst)<<dstShift | uint32(id.Src)
}

// Reply returns the identifier of a flow control frame answering a frame
// with identifier id: the same priority and type, source and destination
// swapped.
func (id FrameID) Reply() FrameID {
	return FrameID{Priority: id.Priority, Type: id.Type, Dst: id.Src, Src: id.Dst}
}

// String returns id as eight hexadecimal digits, the way candump shows an
// extended identifier.
func (id FrameID) String() string { return fmt.Sprintf("%08X", id.Raw()) }

// ParseFrameID decodes a 29-bit identifier value (without flags) and checks
// it as FrameID.Check does. It returns an error wrapping ErrBadFrame when
// raw has bits above 29 or reserved bits set, or fails the check.
func ParseFrameID(raw uint32) (FrameID, error) {
	if raw&^uint32(idBits) != 0 {
		return FrameID{}, errorf(ErrBadFrame, "identifier 0x%x has bits above the 29 of an extended identifier", raw)
	}
	if raw&rsvdMask != 0 {
		return FrameID{}, errorf(ErrBadFrame, "identifier %08X has reserved bits 25..24 set", raw)
	}
	id := FrameID{
		Priority: uint8(raw >> prioShift),
		Type:     MsgType(raw >> typeShift),
		Dst:      Addr(raw >> dstShift),
		Src:      Addr(raw),
	}
	if err := id.Check(); err != nil {
		return FrameID{}, err
	}
	return id, nil
}
