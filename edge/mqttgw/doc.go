// Package mqttgw is an edge node's device gateway: it connects the site's
// readers, door controllers, kiosks and dispensers over MQTT to the node,
// speaking the protocol of hardware/mqttproto (docs/protocol-mqtt.md) for
// every topic and payload.
//
// # Brokers
//
// By default the gateway runs an embedded broker (mochi-mqtt) that devices
// connect to. Its auth hook is the site's device security (DESIGN.md §6):
// a device connects with user name {site}.{kind}.{device}, client ID equal
// to the user name, and its own secret as password, and is looked up
// through Site.Device on every connect; it may then publish and subscribe
// only on its own topics (mqttproto.DeviceMayPublish, DeviceMaySubscribe).
// A device's client ID must equal its user name: the broker keys sessions by
// client ID, so no device can take over another's session. Its last will,
// which the broker publishes without an access check, must be on its own
// state topic, and it must use a clean session as the protocol asks. The
// gateway itself uses the broker's inline client.
//
// With Config.BrokerURL the gateway is instead a client (paho, MQTT 3.1.1)
// of an external broker such as Mosquitto, which then authenticates devices
// and enforces their ACLs. The gateway still refuses messages of devices
// that are not registered at the site, of another kind, or disabled. Taps
// and events are shared subscriptions, so several nodes on one broker split
// them; the session is persistent and resubscribed after every reconnect.
//
// # Taps
//
// A tap is decoded strictly (a malformed one is logged, counted and
// otherwise ignored), checked (the device must be a registered, enabled
// reader or door controller of the site, at the tap's door), decided with
// Site.Decide, and answered with a Decision carrying the tap's request ID on
// the device's decision topic. A grant also sends an unlock DoorCmd, with
// the same request ID, to the door's controllers. The site has no index from
// doors to controllers, so the gateway keeps one learned from the
// controllers' own traffic (a connect to the embedded broker, or any valid
// message: their retained state arrives as soon as the gateway subscribes),
// which is exactly the set of controllers its broker can reach, and checks
// each candidate with Site.Device on every grant. The answer never waits for
// the site's replicated log:
// the decision becomes an access event on a queue that a single goroutine
// records with Site.RecordEvents in batches, retrying while the site has no
// quorum.
//
// Decisions are idempotent by (device, request ID) for Config.DedupTTL: a
// repeated tap (QoS 1 redelivery, a device retrying after a reconnect or a
// broker restart) is answered with the same decision, byte for byte, and
// records no second event. The memory is per gateway process; an embedded
// broker restarts with its node, so it forgets with it.
//
// # Device state
//
// The gateway follows each device's retained state message (and the
// offline state of its last will) and exposes it with Gateway.Devices.
// Device events are decoded, logged (alarms at warn level) and counted. A
// door controller's states and events also go to Config.Doors (the node's
// edge/doors.Manager), which pushes its offline cache and heartbeats on its
// cmd topic and records its events once per (device, seq) in the replicated
// log before acknowledging them. Kiosk and dispenser events are not
// recorded or acknowledged yet.
//
// # Logs and metrics
//
// Logs use the injected *slog.Logger with keys site, node, device, kind,
// door, card (always redacted), request_id, reason and err; secrets are
// never logged. Prometheus metrics (Config.Registerer) are prefixed
// gatehouse_mqttgw_ and labelled with site and node: taps_total by result,
// decision_seconds, events_queued_total, events_recorded_total,
// events_dropped_total, events_queue_length, record_errors_total,
// clients_connected, auth_failures_total by reason, acl_refusals_total by
// action, messages_total and device_events_total.
package mqttgw
