// Package site is the simulator's reverse mode: a simulated Gatehouse
// SITE that a device vendor points a real reader, door controller, kiosk
// or card dispenser at, to test it against the Gatehouse device protocols
// (docs/protocol-mqtt.md, docs/protocol-can.md) without a real edge.
//
// A site file (Parse; the format is in docs/sim-site.md) names the site,
// its doors, its devices with their credentials, the decision to give for
// each card, the offline caches of the doors, the heartbeat interval and
// the unlock time, and optionally a script of operator commands.
//
// Site runs it: an embedded MQTT broker (mochi) with per-device
// credentials and access rules, and optionally a CAN stream-bridge hub
// with the site's canbus.Gateway. It answers taps with decisions (deduped
// by request ID), pushes offline caches to door controllers when they come
// online, sends heartbeats, acknowledges events by sequence number (asking
// for a resend on a gap), answers kiosk and dispenser messages as far as
// the protocol defines them without the visitor system, and runs operator
// commands from the script or from Site.Do.
//
// Every message a device sends is checked with the decoders of
// hardware/mqttproto and hardware/canbus and against the protocol's rules;
// each message is printed to a timeline as it happens and every breach is
// a Violation. Site.Close ends the run and adds the violations only the end
// can show (a gap never filled, a pushed cache never reported, a command
// never answered); Report.OK is true only when there were none.
//
// It imports hardware/ and access/ only, never edge/: the simulated site's
// broker hook is its own.
package site
