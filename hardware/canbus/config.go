package canbus

import (
	"context"
	"net"
	"strings"
	"time"
)

// Transport names how a Bus reaches its CAN bus.
type Transport string

// The transports.
const (
	// TransportSocketCAN is a Linux SocketCAN interface (production: a CAN
	// adapter such as can0; or a virtual vcan0), through
	// can.NewBusForInterfaceWithName.
	TransportSocketCAN Transport = "socketcan"
	// TransportTCP is the stream bridge: a TCP connection carrying frames
	// of WireFrameLen bytes, to a Hub (a virtual bus shared by several
	// processes) or to a single peer.
	TransportTCP Transport = "tcp"
)

// Config selects and configures the transport of a Bus. It is what the
// edge's and the simulator's configuration files hold under "can".
type Config struct {
	// Transport is TransportSocketCAN or TransportTCP.
	Transport Transport
	// Interface is the SocketCAN interface name, such as "can0"
	// (socketcan only).
	Interface string
	// Address is host:port of the Hub or peer to dial (tcp only).
	Address string
	// DialTimeout bounds the TCP dial (5 s when zero).
	DialTimeout time.Duration
}

// Validate checks c: a known transport, and the interface name (1 to 15
// characters, no '/', ':' or white space) or address (host:port) it needs,
// and nothing the other transport needs. It returns an error wrapping
// ErrConfig.
func (c Config) Validate() error {
	switch c.Transport {
	case TransportSocketCAN:
		if c.Address != "" {
			return errorf(ErrConfig, "can: address %q is for transport tcp", c.Address)
		}
		if n := len(c.Interface); n < 1 || n > 15 || strings.ContainsAny(c.Interface, "/: \t\n") {
			return errorf(ErrConfig, "can: interface %q is not a network interface name (1 to 15 characters, no / or :)", c.Interface)
		}
	case TransportTCP:
		if c.Interface != "" {
			return errorf(ErrConfig, "can: interface %q is for transport socketcan", c.Interface)
		}
		if _, port, err := net.SplitHostPort(c.Address); err != nil || port == "" {
			return errorf(ErrConfig, "can: address %q is not host:port", c.Address)
		}
	default:
		return errorf(ErrConfig, "can: transport %q is not %q or %q", c.Transport, TransportSocketCAN, TransportTCP)
	}
	if c.DialTimeout < 0 {
		return errorf(ErrConfig, "can: negative dial timeout %v", c.DialTimeout)
	}
	return nil
}

// Open validates c and opens a Bus over its transport: OpenSocketCAN for
// socketcan, or a Stream over a TCP connection dialled within ctx and
// DialTimeout for tcp. It returns an error wrapping ErrConfig for a bad c,
// and the transport's error (wrapping ErrClosed for a failed dial).
func Open(ctx context.Context, c Config) (*Bus, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Transport == TransportSocketCAN {
		b, err := OpenSocketCAN(c.Interface)
		if err != nil {
			return nil, errorf(ErrClosed, "can: open socketcan %s: %w", c.Interface, err)
		}
		return b, nil
	}
	timeout := c.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return nil, errorf(ErrClosed, "can: dial %s: %w", c.Address, err)
	}
	return NewBus(NewStream(conn)), nil
}
