package mqttgw

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Timing of the external broker client.
const (
	// extKeepAlive is the client's MQTT keep alive.
	extKeepAlive = 10 * time.Second
	// extReconnectMax caps the backoff between reconnection attempts: the
	// broker is on the site's own network, so trying often is cheap.
	extReconnectMax = 2 * time.Second
	// extPublishTimeout bounds the wait for a publish's PUBACK.
	extPublishTimeout = 5 * time.Second
	// extSubscribeTimeout bounds the wait for a SUBACK.
	extSubscribeTimeout = 10 * time.Second
	// extResubscribePause is the pause before retrying a failed subscribe.
	extResubscribePause = time.Second
)

// errPublishTimeout reports a publish the broker did not acknowledge in time.
var errPublishTimeout = errors.New("mqttgw: publish not acknowledged in time")

// external is the site service's client of an external broker (paho, MQTT
// 3.1.1). It connects with a stable client ID per node and a persistent
// session (clean session false), so that QoS 1 messages for the gateway are
// queued by the broker while it is briefly away; reconnects by itself; and
// subscribes again after every connect, because a broker that restarted
// without persistence has forgotten the session.
//
// Taps and events are subscribed as shared subscriptions
// ($share/gatehouse-{site}/...), so several edge nodes on one broker split
// them and each tap is answered once. States are subscribed plainly: every
// node wants every device's state, and retained messages are not delivered
// on shared subscriptions.
//
// Messages are handled concurrently, each in its own goroutine, and
// acknowledged (PUBACK) only after the gateway handled them: a tap that
// arrives while the gateway closes is left unacknowledged, so the broker
// delivers it again when the node's session reconnects.
type external struct {
	g          *Gateway
	c          paho.Client
	filters    map[string]byte
	subscribed chan struct{} // closed after the first successful subscribe
	once       sync.Once
	closing    atomic.Bool
}

// newExternal makes the client of cfg.BrokerURL, not connected yet.
func (g *Gateway) newExternal() (*external, error) {
	subs, err := mqttproto.SiteSubscriptions(g.cfg.SiteID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	x := &external{g: g, filters: make(map[string]byte), subscribed: make(chan struct{})}
	group := "gatehouse-" + g.cfg.SiteID
	for _, f := range subs {
		if !strings.HasSuffix(f, "/"+string(mqttproto.ChannelState)) {
			f = "$share/" + group + "/" + f
		}
		x.filters[f] = mqttproto.QoS
	}
	if g.cfg.Doors != nil {
		// Every node gets every door controller event; the DoorManager of
		// the node in charge records them (duplicates of the shared
		// delivery are dropped by sequence number), the others ignore them.
		x.filters["gh/"+g.cfg.SiteID+"/"+string(mqttproto.KindDoor)+"/+/"+string(mqttproto.ChannelEvent)] = mqttproto.QoS
	}
	opts := paho.NewClientOptions().
		AddBroker(g.cfg.BrokerURL).
		SetClientID("gatehouse-" + g.cfg.SiteID + "-" + g.cfg.NodeID).
		SetUsername(g.cfg.ServiceUsername).
		SetPassword(g.cfg.ServicePassword).
		SetCleanSession(false).
		SetKeepAlive(extKeepAlive).
		SetPingTimeout(extKeepAlive / 2).
		SetWriteTimeout(extPublishTimeout).
		SetConnectTimeout(extPublishTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(extReconnectMax).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetOrderMatters(false).
		SetAutoAckDisabled(true).
		SetDefaultPublishHandler(x.onMessage).
		SetOnConnectHandler(x.onConnect).
		SetConnectionLostHandler(x.onLost)
	if g.cfg.TLS != nil {
		opts.SetTLSConfig(g.cfg.TLS)
	}
	x.c = paho.NewClient(opts)
	return x, nil
}

// connect connects and subscribes, waiting for both until ctx ends. It
// returns an error wrapping ErrBroker (and disconnects) when ctx ends
// first.
func (x *external) connect(ctx context.Context) error {
	// With ConnectRetry the token completes only once connected; the
	// first successful subscribe (in onConnect) is what Open waits for.
	x.c.Connect()
	select {
	case <-x.subscribed:
		return nil
	case <-ctx.Done():
		x.close()
		return fmt.Errorf("%w: %s: not connected and subscribed: %v", ErrBroker, x.g.cfg.BrokerURL, ctx.Err())
	}
}

// onConnect subscribes after every connect and reconnect. paho calls it in
// its own goroutine.
func (x *external) onConnect(c paho.Client) {
	log := x.g.log.With("broker", x.g.cfg.BrokerURL)
	for attempt := 1; ; attempt++ {
		if x.closing.Load() {
			return
		}
		err := x.subscribe(c)
		if err == nil {
			log.Info("connected to broker and subscribed", "filters", len(x.filters))
			x.once.Do(func() { close(x.subscribed) })
			return
		}
		log.Warn("subscribing at the broker failed", "attempt", attempt, "err", err)
		if !c.IsConnectionOpen() {
			return // the next connect calls onConnect again
		}
		time.Sleep(extResubscribePause)
	}
}

// subscribe subscribes to every filter and checks the broker granted each.
func (x *external) subscribe(c paho.Client) error {
	tok := c.SubscribeMultiple(x.filters, nil)
	if !tok.WaitTimeout(extSubscribeTimeout) {
		return errors.New("no SUBACK in time")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	for f, code := range st.Result() {
		if code > 2 {
			return fmt.Errorf("broker refused subscription %s (code %#x)", f, code)
		}
	}
	return nil
}

// onLost logs a lost connection; paho reconnects by itself.
func (x *external) onLost(_ paho.Client, err error) {
	if !x.closing.Load() {
		x.g.log.Warn("connection to broker lost; reconnecting", "broker", x.g.cfg.BrokerURL, "err", err)
	}
}

// onMessage hands a message to the gateway and acknowledges it once
// handled.
func (x *external) onMessage(_ paho.Client, m paho.Message) {
	if x.g.onMessage(m.Topic(), m.Payload(), m.Retained()) {
		m.Ack()
	}
}

// publish publishes with QoS 1; the returned wait reports the broker's
// acknowledgement (or a timeout).
func (x *external) publish(topic string, payload []byte) (func() error, error) {
	tok := x.c.Publish(topic, mqttproto.QoS, false, payload)
	return func() error {
		if !tok.WaitTimeout(extPublishTimeout) {
			return errPublishTimeout
		}
		return tok.Error()
	}, nil
}

// stopTaps unsubscribes from the shared tap and event filters, so that the
// broker hands them all to the site's other nodes instead of queueing this
// node's share in its persistent session until it is back. The state
// subscription stays.
func (x *external) stopTaps() {
	var shared []string
	for f := range x.filters {
		if strings.HasPrefix(f, "$share/") {
			shared = append(shared, f)
		}
	}
	tok := x.c.Unsubscribe(shared...)
	if !tok.WaitTimeout(extSubscribeTimeout) || tok.Error() != nil {
		x.g.log.Warn("unsubscribing from taps at the broker failed; it may queue this node's share until the node is back", "err", tok.Error())
	}
}

// close disconnects, leaving the persistent session at the broker for the
// node's next start.
func (x *external) close() {
	x.closing.Store(true)
	x.c.Disconnect(250)
}
