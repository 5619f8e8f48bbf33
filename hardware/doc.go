// Package hardware is the home of Gatehouse's device protocols: how kiosks,
// card dispensers and encoders, readers and door controllers talk to their
// site. Devices never talk to the cloud; they talk to the edge appliance of
// their site over MQTT or over a CAN bus.
//
// Each protocol lives once, in a sub-package, and both sides use it: the
// edge's device gateway speaks it as the site, and the simulator (sim/) speaks
// it as the devices, or as the site when a vendor tests real hardware against
// a simulated edge. The sub-packages are:
//
//   - mqttproto: MQTT topics, the access rules of the broker, and the
//     versioned JSON payload of every message (docs/protocol-mqtt.md is the vendor
//     specification);
//   - canbus: CAN frame IDs, ISO-TP style segmentation, the TCP stream bridge
//     and SocketCAN transports, and the door-controller messages on the bus
//     (docs/protocol-can.md is the vendor spec).
//
// Code under hardware/ imports only the standard library and the domain
// package access; the edge and the simulator import hardware, never the
// reverse (asserted by deps_test.go at the repository root).
package hardware
