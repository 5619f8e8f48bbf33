package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// WAN is the link between a site and the hub: a toxiproxy proxy, used as a
// library, in front of the hub's listener. The site's uplink dials URL.
//
// Cut disables the proxy, which closes every live connection and refuses
// new ones (a partition); Heal enables it again on the same address.
// SetLatency and SetBandwidth add toxics for a slow link. Two counting
// toxics, one per direction, count every byte that passes (Bytes).
//
// Its methods are safe for concurrent use.
type WAN struct {
	mu    sync.Mutex
	proxy *toxiproxy.Proxy
	up    *atomic.Int64 // site → hub bytes
	down  *atomic.Int64 // hub → site bytes
	names []string      // counter names registered, freed by Close
}

// countToxicType is the toxic type of the byte counters.
const countToxicType = "gatehouse_count"

// counters holds the byte counters by name: a toxic is built by toxiproxy
// from its JSON attributes, so it finds its counter here.
var (
	countersMu sync.Mutex
	counters   = map[string]*atomic.Int64{}
	counterSeq atomic.Uint64
)

// countToxic passes data through unchanged and adds its size to the
// counter named Counter.
type countToxic struct {
	Counter string `json:"counter"`
}

// Pipe forwards every chunk and counts it.
func (t *countToxic) Pipe(stub *toxics.ToxicStub) {
	countersMu.Lock()
	c := counters[t.Counter]
	countersMu.Unlock()
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if c != nil {
				c.Add(int64(len(chunk.Data)))
			}
			stub.Output <- chunk
		}
	}
}

func init() {
	toxics.Register(countToxicType, new(countToxic))
}

// NewWAN starts a proxy on a loopback port forwarding to upstream (the
// hub's host:port). It returns an error when the proxy cannot listen.
//
// toxiproxy's bandwidth toxic logs through zerolog's global logger; NewWAN
// turns that logger off (nothing else here uses zerolog).
func NewWAN(upstream string) (*WAN, error) {
	zerolog.SetGlobalLevel(zerolog.Disabled)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "wan", "127.0.0.1:0", upstream)
	w := &WAN{proxy: p, up: new(atomic.Int64), down: new(atomic.Int64)}
	for _, c := range []struct {
		dir string
		n   *atomic.Int64
	}{{"upstream", w.up}, {"downstream", w.down}} {
		name := fmt.Sprintf("wan-%d-%s", counterSeq.Add(1), c.dir)
		countersMu.Lock()
		counters[name] = c.n
		countersMu.Unlock()
		w.names = append(w.names, name)
		if err := w.addToxic(fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":{"counter":%q}}`,
			"count_"+c.dir, countToxicType, c.dir, name)); err != nil {
			w.Close()
			return nil, err
		}
	}
	if err := p.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("partition: wan proxy: %w", err)
	}
	return w, nil
}

func (w *WAN) addToxic(js string) error {
	if _, err := w.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return fmt.Errorf("partition: wan toxic %s: %w", js, err)
	}
	return nil
}

// Addr returns the proxy's host:port.
func (w *WAN) Addr() string {
	w.proxy.Lock()
	defer w.proxy.Unlock()
	return w.proxy.Listen
}

// URL returns the hub's URL through the proxy, for the site's uplink.
func (w *WAN) URL() string { return "http://" + w.Addr() }

// Cut partitions the link: every live connection is closed and new ones
// are refused until Heal.
func (w *WAN) Cut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.proxy.Stop()
}

// Heal lets connections through again, on the same address. It returns
// an error when the address cannot be bound again.
func (w *WAN) Heal() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.proxy.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return fmt.Errorf("partition: wan heal: %w", err)
	}
	return nil
}

// IsCut reports whether the link is cut now.
func (w *WAN) IsCut() bool {
	w.proxy.Lock()
	defer w.proxy.Unlock()
	return !w.proxy.Enabled
}

// SetLatency adds ms milliseconds of latency in each direction (0 removes
// it). It returns toxiproxy's error for a bad value.
func (w *WAN) SetLatency(ms int) error {
	return w.setToxic("latency", ms, func(dir string) string {
		return fmt.Sprintf(`{"name":"latency_%s","type":"latency","stream":%q,"attributes":{"latency":%d}}`, dir, dir, ms)
	})
}

// SetBandwidth limits each direction to kbps kilobytes per second (0
// removes the limit).
func (w *WAN) SetBandwidth(kbps int) error {
	return w.setToxic("bandwidth", kbps, func(dir string) string {
		return fmt.Sprintf(`{"name":"bandwidth_%s","type":"bandwidth","stream":%q,"attributes":{"rate":%d}}`, dir, dir, kbps)
	})
}

func (w *WAN) setToxic(kind string, v int, js func(dir string) string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, dir := range []string{"upstream", "downstream"} {
		name := kind + "_" + dir
		if w.proxy.Toxics.GetToxic(name) != nil {
			if err := w.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
				return fmt.Errorf("partition: wan: remove %s: %w", name, err)
			}
		}
		if v > 0 {
			if err := w.addToxic(js(dir)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bytes returns the bytes that passed the link so far: site → hub (up)
// and hub → site (down), TCP payload including HTTP/2 and TLS framing.
func (w *WAN) Bytes() (up, down int64) { return w.up.Load(), w.down.Load() }

// Close stops the proxy and frees its counters. It is idempotent.
func (w *WAN) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.proxy.Stop()
	countersMu.Lock()
	for _, n := range w.names {
		delete(counters, n)
	}
	countersMu.Unlock()
	w.names = nil
}
