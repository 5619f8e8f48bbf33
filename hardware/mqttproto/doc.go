// Package mqttproto is Gatehouse's MQTT device protocol: the topic layout,
// the broker's access rules, and the versioned JSON payload of every message
// between a site and its readers, door controllers, kiosks and card
// dispensers. The edge's device gateway and the simulator both use it for
// every topic and payload; docs/protocol-mqtt.md is the same protocol written for
// device vendors.
//
// Topics are gh/{site}/{kind}/{device}/{channel} (see Topic, ParseTopic,
// Kind and Channel). Devices publish on the tap, event and state channels
// and subscribe to decision and cmd; DeviceMayPublish and DeviceMaySubscribe
// are the access rule a broker applies to them. Every message is published
// with QoS 1; state is retained and is also the device's last will (Will).
//
// Each payload type (Tap, Decision, DoorEvent, DoorCmd, KioskEvent,
// KioskCmd, DispenserEvent, DispenserCmd, State) has a Validate method, a
// Marshal method that validates before it encodes, and a Decode function;
// Decode picks the decoder from a topic. Decoding is strict: the payload
// must be at most MaxPayload bytes of well-formed JSON holding one object
// with "v" equal to Version, no unknown or duplicate fields, no null, every
// required field, and values in range. Every error is an access.Invalid
// error wrapping one of the sentinel errors of this package (ErrTooLarge,
// ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField, ErrBadValue,
// ErrBadTopic), and names the message and field at fault. A payload that
// decodes re-encodes to a payload that decodes to the same value.
//
// Times travel as Unix milliseconds and durations as milliseconds: Marshal
// drops anything finer, and decoded times are in UTC. Card numbers travel
// as decimal strings, since they may exceed what a JSON number carries
// exactly.
//
// Everything here is pure: no I/O, no clock, no shared mutable state; all
// functions and methods are safe for concurrent use.
package mqttproto
