package canbus

import (
	"context"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"socketcan", Config{Transport: TransportSocketCAN, Interface: "can0"}, true},
		{"vcan", Config{Transport: TransportSocketCAN, Interface: "vcan0"}, true},
		{"tcp", Config{Transport: TransportTCP, Address: "127.0.0.1:7000"}, true},
		{"tcp name", Config{Transport: TransportTCP, Address: "edge-1:7000"}, true},
		{"no transport", Config{Interface: "can0"}, false},
		{"unknown transport", Config{Transport: "udp", Address: "127.0.0.1:1"}, false},
		{"socketcan no interface", Config{Transport: TransportSocketCAN}, false},
		{"socketcan long interface", Config{Transport: TransportSocketCAN, Interface: "can0123456789abc"}, false},
		{"socketcan slash", Config{Transport: TransportSocketCAN, Interface: "../can0"}, false},
		{"socketcan with address", Config{Transport: TransportSocketCAN, Interface: "can0", Address: "x:1"}, false},
		{"tcp no port", Config{Transport: TransportTCP, Address: "127.0.0.1"}, false},
		{"tcp with interface", Config{Transport: TransportTCP, Address: "127.0.0.1:1", Interface: "can0"}, false},
		{"negative timeout", Config{Transport: TransportTCP, Address: "127.0.0.1:1", DialTimeout: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				checkError(t, err, ErrConfig)
				_, err := Open(context.Background(), tc.cfg)
				checkError(t, err, ErrConfig)
			}
		})
	}
}

// TestOpenSocketCAN: the SocketCAN path is compiled and selected by
// configuration. This machine has no CAN interface, so opening one fails
// with a clear error rather than a hang or a panic.
func TestOpenSocketCAN(t *testing.T) {
	b, err := Open(context.Background(), Config{Transport: TransportSocketCAN, Interface: "gh-nocan0"})
	if err == nil {
		b.Close()
		t.Skip("an interface named gh-nocan0 exists")
	}
	checkError(t, err, ErrClosed)
}

func TestOpenTCPRefused(t *testing.T) {
	_, err := Open(context.Background(), Config{Transport: TransportTCP, Address: "127.0.0.1:1"})
	checkError(t, err, ErrClosed)
}
