// Package node runs one edge node of a site: a Raft member (edge/raftnode)
// with the site's state machine (edge/sitestate), and the node's local API
// over HTTP: the cluster service other nodes use, and the status service
// the hub, `gatehouse ctl` and the console read.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/cangw"
	"github.com/gatehouse/gatehouse/edge/doors"
	"github.com/gatehouse/gatehouse/edge/mqttgw"
	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	"github.com/gatehouse/gatehouse/edge/uplink"
	"github.com/gatehouse/gatehouse/edge/visitdesk"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

// Config configures an edge node.
type Config struct {
	// NodeID is this node's ID, unique within the site and stable across restarts.
	NodeID string `json:"node_id"`
	// SiteID is the site's ID (a ULID).
	SiteID string `json:"site_id"`
	// SiteName and TimeZone describe the site; the bootstrap node writes
	// them when the site has no record yet.
	SiteName string `json:"site_name"`
	TimeZone string `json:"time_zone"`
	// DataDir holds the node's Raft log, snapshots and state.
	DataDir string `json:"data_dir"`
	// RaftAddr is the Raft transport's TCP address; stable across restarts.
	RaftAddr string `json:"raft_addr"`
	// RaftAdvertise is the Raft address other nodes dial, when it differs
	// from RaftAddr (a 0.0.0.0 bind, NAT, a proxy). Optional.
	RaftAdvertise string `json:"raft_advertise"`
	// APIAddr is where the local API is served, e.g. "127.0.0.1:7001".
	APIAddr string `json:"api_addr"`
	// Bootstrap makes this node the first member of a new site.
	Bootstrap bool `json:"bootstrap"`
	// Join is the local API URL of any member to join through, e.g.
	// "http://127.0.0.1:7001".
	Join string `json:"join"`
	// ClusterToken is the site's shared secret for node-to-node calls.
	ClusterToken string `json:"cluster_token"`
	// APIToken is the secret the site's local API (SiteService) requires.
	APIToken string `json:"api_token"`
	// MQTTListen is the embedded MQTT broker's address for the site's
	// devices, e.g. "0.0.0.0:1883". Ignored when MQTTBroker is set.
	MQTTListen string `json:"mqtt_listen"`
	// MQTTBroker selects an external broker (e.g. "tcp://10.0.0.9:1883",
	// Mosquitto) instead of the embedded one; device authentication is
	// then the broker's job.
	MQTTBroker string `json:"mqtt_broker"`
	// MQTTUsername and MQTTPassword are this site service's credentials at
	// the external broker.
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
	// CAN, when set, connects the door controllers of a CAN bus to this
	// node. Exactly one node of a site may be configured with a given bus.
	CAN *CANConfig `json:"can"`
	// LeaveOnClose removes the node from the cluster when it shuts down
	// cleanly (not on a crash).
	LeaveOnClose bool `json:"leave_on_close"`
	// Uplink, when set, links the site to the cloud hub (only the Raft
	// leader runs it).
	Uplink *UplinkConfig `json:"uplink"`
	// UplinkTLS, when set, is the uplink's TLS configuration (built by
	// the caller, e.g. from cloud/pki); it takes precedence over
	// Uplink.TLSDir.
	UplinkTLS *tls.Config `json:"-"`
	// TuneUplink adjusts the uplink's configuration (backoff in tests);
	// optional.
	TuneUplink func(*uplink.Config) `json:"-"`
	// Version is reported in status.
	Version string `json:"-"`
	// TuneRaft adjusts the Raft configuration (timeouts in tests); optional.
	TuneRaft func(*raftnode.Config) `json:"-"`
	// TuneDoors adjusts the door managers' configuration (heartbeat
	// interval in tests); optional.
	TuneDoors func(*doors.Config) `json:"-"`
	// Visits, when set, runs the site's visitor desk on this node: kiosks
	// and card dispensers over MQTT, checkout and the end of visits
	// (docs/edge.md "Visitors at the site").
	Visits *VisitsConfig `json:"visits"`
	// TuneVisits adjusts the visitor desk's configuration (clock, sweep
	// interval in tests); optional.
	TuneVisits func(*visitdesk.Config) `json:"-"`
}

// CANConfig configures a CAN bus of door controllers (docs/edge.md).
type CANConfig struct {
	// Transport is "socketcan" (Interface) or "tcp" (Address: the stream
	// bridge, e.g. a canbus.Hub of the simulator).
	Transport string `json:"transport"`
	// Interface is the SocketCAN interface, e.g. "can0".
	Interface string `json:"interface"`
	// Address is host:port of the stream bridge.
	Address string `json:"address"`
	// Controllers maps each controller's bus address, two hexadecimal
	// digits "01" to "fe", to its device ID.
	Controllers map[string]string `json:"controllers"`
}

// gateway returns the cangw config of c.
func (c *CANConfig) gateway(site, node string) (cangw.Config, error) {
	g := cangw.Config{SiteID: access.ID(site), NodeID: node, Controllers: map[canbus.Addr]access.ID{},
		Bus: canbus.Config{Transport: canbus.Transport(c.Transport), Interface: c.Interface, Address: c.Address}}
	for a, id := range c.Controllers {
		var n uint8
		if len(a) != 2 {
			return g, fmt.Errorf("edge config: can: controller address %q: want two hexadecimal digits", a)
		}
		if _, err := fmt.Sscanf(a, "%02x", &n); err != nil {
			return g, fmt.Errorf("edge config: can: controller address %q: want two hexadecimal digits", a)
		}
		g.Controllers[canbus.Addr(n)] = access.ID(id)
	}
	return g, g.Validate()
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("edge config: node_id is required")
	case c.DataDir == "":
		return errors.New("edge config: data_dir is required")
	case c.RaftAddr == "":
		return errors.New("edge config: raft_addr is required")
	case c.APIAddr == "":
		return errors.New("edge config: api_addr is required")
	case c.ClusterToken == "":
		return errors.New("edge config: cluster_token is required (the site's shared secret)")
	case c.APIToken == "":
		return errors.New("edge config: api_token is required (the secret of the site's local API)")
	case c.Bootstrap && c.Join != "":
		return errors.New("edge config: bootstrap and join exclude each other")
	}
	if _, err := access.ParseID(c.SiteID); err != nil {
		return fmt.Errorf("edge config: site_id: %w", err)
	}
	if c.CAN != nil {
		if _, err := c.CAN.gateway(c.SiteID, c.NodeID); err != nil {
			return err
		}
	}
	if c.Uplink != nil {
		if err := c.Uplink.Validate(); err != nil {
			return err
		}
	}
	if c.Visits != nil {
		if _, err := c.Visits.desk(); err != nil {
			return err
		}
	}
	if c.Join != "" && !strings.HasPrefix(c.Join, "http://") && !strings.HasPrefix(c.Join, "https://") {
		return fmt.Errorf("edge config: join %q: want a URL such as http://10.0.0.5:7001", c.Join)
	}
	return nil
}

// Node is a running edge node. Open starts it; Close stops it and is
// idempotent.
type Node struct {
	cfg     Config
	base    *slog.Logger // handed to raftnode, which adds node and site itself
	log     *slog.Logger
	started time.Time

	machine *sitestate.Machine
	raft    *raftnode.Node
	metrics *metrics
	gateway *mqttgw.Gateway
	can     *cangw.Gateway
	// mqttDoors and canDoors manage the door controllers reached over
	// MQTT and over CAN (each transport has its own rule of which node is
	// in charge, see Open).
	mqttDoors *doors.Manager
	canDoors  *doors.Manager
	// uplink links the site to the hub while this node leads (nil
	// without Config.Uplink).
	uplink *uplink.Uplink
	// desk is the visitor desk (nil without Config.Visits).
	desk *visitdesk.Desk

	ln     net.Listener
	srv    *http.Server
	served chan error

	closeOnce sync.Once
	closeErr  error
}

// New returns a node for cfg; it does nothing until Open.
func New(cfg Config, log *slog.Logger) *Node {
	return &Node{cfg: cfg, base: log, log: log.With("node", cfg.NodeID, "site", cfg.SiteID)}
}

// Open binds the local API, opens the Raft member (bootstrapping or joining
// as configured) and, on the bootstrap node, writes the site record once
// the node leads. It returns when the node is a member of its cluster.
func (n *Node) Open(ctx context.Context) (err error) {
	if err := n.cfg.Validate(); err != nil {
		return err
	}
	n.started = time.Now()
	var lc net.ListenConfig
	n.ln, err = lc.Listen(ctx, "tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("edge: listen %s: %w", n.cfg.APIAddr, err)
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	n.machine = sitestate.New(access.ID(n.cfg.SiteID), n.base.With("node", n.cfg.NodeID))
	rc := raftnode.Config{
		NodeID:        n.cfg.NodeID,
		SiteID:        n.cfg.SiteID,
		DataDir:       n.cfg.DataDir,
		RaftAddr:      n.cfg.RaftAddr,
		RaftAdvertise: n.cfg.RaftAdvertise,
		APIAddr:       n.URL(),
		IsFencing:     sitestate.Fencing,
		ClusterToken:  n.cfg.ClusterToken,
		Bootstrap:     n.cfg.Bootstrap,
		JoinAddr:      n.cfg.Join,
		LeaveOnClose:  n.cfg.LeaveOnClose,
		Logger:        n.base,
	}
	if n.cfg.TuneRaft != nil {
		n.cfg.TuneRaft(&rc)
	}
	n.raft, err = raftnode.New(rc, n.machine)
	if err != nil {
		return err
	}
	// The uplink is made before the API serves its metrics, and started
	// once Raft is open.
	if err := n.newUplink(); err != nil {
		return fmt.Errorf("edge: uplink: %w", err)
	}

	n.metrics = newMetrics(n)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.handler())
	mux.Handle(n.raft.ClusterHandler())
	mux.Handle(statusv1connect.NewStatusServiceHandler(&statusService{n: n}))
	mux.Handle(edgev1connect.NewSiteServiceHandler(&siteService{n: n}, connect.WithInterceptors(apiAuth(n.cfg.APIToken))))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if st := n.raft.Status(); st.LeaderID == "" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	n.srv = &http.Server{
		Handler:           http.MaxBytesHandler(mux, 8<<20),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	n.served = make(chan error, 1)
	go func() { n.served <- n.srv.Serve(n.ln) }()

	if err := n.raft.Open(ctx); err != nil {
		return err
	}
	if n.uplink != nil {
		n.uplink.Open()
	}
	if n.cfg.Bootstrap {
		if err := n.ensureSite(ctx); err != nil {
			return err
		}
	}
	listen := n.cfg.MQTTListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	// Door controllers over MQTT: with the embedded broker each node
	// manages the controllers connected to its own broker; with an
	// external broker every node sees every controller, and only the Raft
	// leader manages them.
	log := n.base.With("node", n.cfg.NodeID, "site", n.cfg.SiteID)
	dc := doors.Config{NodeID: n.cfg.NodeID}
	if n.cfg.TuneDoors != nil {
		n.cfg.TuneDoors(&dc)
	}
	mdc := dc
	if n.cfg.MQTTBroker != "" {
		mdc.Active = func() bool { return n.raft.Status().State == raftnode.StateLeader }
	}
	n.mqttDoors = doors.New(mdc, doorSite{n}, log.With("transport", "mqtt"))
	n.mqttDoors.Open()
	n.gateway = mqttgw.New(mqttgw.Config{
		SiteID: n.cfg.SiteID, NodeID: n.cfg.NodeID,
		ListenAddr: listen, BrokerURL: n.cfg.MQTTBroker,
		ServiceUsername: n.cfg.MQTTUsername, ServicePassword: n.cfg.MQTTPassword,
		Registerer: n.metrics.reg,
		Doors:      n.mqttDoors,
	}, siteAdapter{n}, log)
	if err := n.gateway.Open(ctx); err != nil {
		return err
	}
	if err := n.openDesk(); err != nil {
		return err
	}
	if n.cfg.CAN != nil {
		// The node wired to a bus is the only one that talks on it, so
		// it always manages that bus's controllers.
		cc, err := n.cfg.CAN.gateway(n.cfg.SiteID, n.cfg.NodeID)
		if err != nil {
			return err
		}
		n.canDoors = doors.New(dc, doorSite{n}, log.With("transport", "can"))
		n.canDoors.Open()
		cc.Doors = n.canDoors
		n.can = cangw.New(cc, siteAdapter{n}, log)
		if err := n.can.Open(ctx); err != nil {
			return fmt.Errorf("edge: can bus: %w", err)
		}
	}
	n.log.Info("edge node serving", "api", n.URL(), "raft", n.raft.RaftAddr(), "mqtt", n.MQTTAddr())
	return nil
}

// ensureSite writes the site record when the site has none yet.
func (n *Node) ensureSite(ctx context.Context) error {
	var have bool
	n.machine.View(func(st *access.State) { _, have = st.Site(access.ID(n.cfg.SiteID)) })
	if have {
		return nil
	}
	name, tz := n.cfg.SiteName, n.cfg.TimeZone
	if name == "" {
		name = n.cfg.SiteID
	}
	if tz == "" {
		tz = "UTC"
	}
	_, err := n.Propose(ctx, &raftv1.Command{Actor: "edge/bootstrap",
		Op: &raftv1.Command_PutSite{PutSite: &accessv1.Site{Id: n.cfg.SiteID, Name: name, TimeZone: tz}}})
	return err
}

// ProposeResults commits commands through the site's leader and returns
// one result per command; domain failures are in the results. It returns an
// error only when the commands could not be committed.
func (n *Node) ProposeResults(ctx context.Context, cmds ...*raftv1.Command) ([]*edgev1.CommandResult, error) {
	start := time.Now()
	res, err := n.raft.Propose(ctx, cmds...)
	n.metrics.observePropose(start, err)
	return res, err
}

// Propose commits commands through the site's leader and returns their
// results; a command's domain error is returned as the first error.
func (n *Node) Propose(ctx context.Context, cmds ...*raftv1.Command) ([]*edgev1.CommandResult, error) {
	res, err := n.ProposeResults(ctx, cmds...)
	if err != nil {
		return nil, err
	}
	for i, r := range res {
		if r.GetErrorCode() != "" {
			return res, fmt.Errorf("command %d: %s: %s", i, r.GetErrorCode(), r.GetError())
		}
	}
	return res, nil
}

// Decide answers a door request from this node's applied state, under the
// online rule while the node's lease is valid and the offline rule after.
func (n *Node) Decide(card access.CardNumber, door access.ID, at time.Time) access.Decision {
	d, _ := n.decide(card, door, at)
	return d
}

func (n *Node) decide(card access.CardNumber, door access.ID, at time.Time) (access.Decision, access.Mode) {
	mode := access.Offline
	if n.raft.LeaseValid(time.Now()) {
		mode = access.Online
	}
	return n.machine.Decide(access.Request{Card: card, Door: door, At: at, Mode: mode}), mode
}

// MQTTAddr returns the embedded broker's address ("" with an external
// broker or before Open).
func (n *Node) MQTTAddr() string {
	if n.gateway == nil || n.cfg.MQTTBroker != "" {
		return ""
	}
	return n.gateway.Addr()
}

// Gateway returns the node's device gateway.
func (n *Node) Gateway() *mqttgw.Gateway { return n.gateway }

// siteAdapter is the node as the device gateway sees it.
type siteAdapter struct{ n *Node }

var (
	_ mqttgw.Site        = siteAdapter{}
	_ mqttgw.ModeDecider = siteAdapter{}
)

func (a siteAdapter) Decide(card access.CardNumber, door access.ID, at time.Time) access.Decision {
	return a.n.Decide(card, door, at)
}

func (a siteAdapter) DecideWithMode(card access.CardNumber, door access.ID, at time.Time) (access.Decision, access.Mode) {
	return a.n.decide(card, door, at)
}

func (a siteAdapter) Device(id access.ID) (d access.Device, ok bool) {
	a.n.machine.View(func(st *access.State) { d, ok = st.Device(id) })
	return d, ok
}

func (a siteAdapter) RecordEvents(ctx context.Context, events []*accessv1.AccessEvent) error {
	_, err := a.n.Propose(ctx, &raftv1.Command{Actor: "edge/mqttgw", Op: &raftv1.Command_RecordEvents{RecordEvents: &raftv1.RecordEvents{Events: events}}})
	return err
}

// doorSite is the node as the door managers see it.
type doorSite struct{ n *Node }

var _ doors.Site = doorSite{}

func (a doorSite) View(fn func(st *access.State)) { a.n.machine.View(fn) }

func (a doorSite) Changed() <-chan struct{} { return a.n.machine.Changed() }

func (a doorSite) DeviceSeq(device access.ID) uint64 { return a.n.machine.DeviceSeq(device) }

// RecordDeviceEvents commits the events and waits until this node applied
// them, so that DeviceSeq then reflects them.
func (a doorSite) RecordDeviceEvents(ctx context.Context, device access.ID, events []*accessv1.AccessEvent, skipTo uint64) error {
	res, err := a.n.Propose(ctx, &raftv1.Command{Actor: "edge/doors", Op: &raftv1.Command_RecordDeviceEvents{
		RecordDeviceEvents: &raftv1.RecordDeviceEvents{DeviceId: string(device), Events: events, SkipTo: skipTo}}})
	if err != nil {
		return err
	}
	return a.n.raft.WaitApplied(ctx, res[0].GetIndex())
}

// DoorManagers returns the node's door managers: over MQTT, and over CAN
// (nil without a bus).
func (n *Node) DoorManagers() (mqtt, can *doors.Manager) { return n.mqttDoors, n.canDoors }

// Machine returns the node's state machine (read access for callers that
// need the index).
func (n *Node) Machine() *sitestate.Machine { return n.machine }

// Raft returns the node's Raft member.
func (n *Node) Raft() *raftnode.Node { return n.raft }

// URL returns the base URL of the node's local API.
func (n *Node) URL() string {
	if n.ln == nil {
		return ""
	}
	return "http://" + n.ln.Addr().String()
}

// Close shuts the node down in order: the local API stops taking requests,
// then the Raft member leaves or steps down as configured and closes its
// transport and stores (Badger last).
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.uplink != nil {
			// The hub link first: it proposes through Raft.
			errs = append(errs, n.uplink.Close())
		}
		if n.desk != nil {
			// The visitor desk proposes through Raft and publishes
			// through the gateway.
			errs = append(errs, n.desk.Close())
		}
		if n.gateway != nil {
			// Devices first: stop taking taps and record the queued
			// events through Raft while it still runs.
			errs = append(errs, n.gateway.Close())
		}
		if n.can != nil {
			errs = append(errs, n.can.Close())
		}
		// Then the door managers, whose loops record through Raft.
		for _, m := range []*doors.Manager{n.mqttDoors, n.canDoors} {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
		if n.raft != nil {
			// Raft first: a leaving node still needs the leader's API, and
			// its own API must answer forwarded calls until it has left.
			errs = append(errs, n.raft.Close())
		}
		if n.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := n.srv.Shutdown(ctx); err != nil {
				_ = n.srv.Close()
			}
			cancel()
			if err := <-n.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		} else if n.ln != nil {
			_ = n.ln.Close()
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("edge node stopped")
	})
	return n.closeErr
}
