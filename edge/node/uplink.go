package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/edge/raftnode"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	"github.com/gatehouse/gatehouse/edge/uplink"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// UplinkConfig configures the site's link to the cloud hub (docs/edge.md
// "Replication and the uplink"). Only the Raft leader runs it.
type UplinkConfig struct {
	// HubURL is the hub's base URL, e.g. "https://hub.example.com:8443".
	HubURL string `json:"hub_url"`
	// Token is the site's bearer token at the hub (or site.token in
	// TLSDir).
	Token string `json:"token"`
	// TLSDir is the site's PKI directory written by `gatehouse cloud site
	// add` (ca.crt, site.crt, site.key, site.token); optional.
	TLSDir string `json:"tls_dir"`
}

// Validate reports the first problem with the uplink configuration.
func (c *UplinkConfig) Validate() error {
	if !strings.HasPrefix(c.HubURL, "http://") && !strings.HasPrefix(c.HubURL, "https://") {
		return fmt.Errorf("edge config: uplink: hub_url %q: want a URL such as https://hub.example.com", c.HubURL)
	}
	if c.Token == "" && c.TLSDir == "" {
		return errors.New("edge config: uplink: a token or a tls_dir is required")
	}
	return nil
}

// newUplink makes the uplink when one is configured (Open starts it).
func (n *Node) newUplink() error {
	c := n.cfg.Uplink
	if c == nil {
		return nil
	}
	uc := uplink.Config{SiteID: n.cfg.SiteID, HubURL: c.HubURL, Token: c.Token, TLS: n.cfg.UplinkTLS,
		Logger: n.base.With("node", n.cfg.NodeID, "site", n.cfg.SiteID)}
	if c.TLSDir != "" && uc.TLS == nil {
		tc, tok, err := uplink.LoadTLS(c.TLSDir)
		if err != nil {
			return err
		}
		uc.TLS = tc
		if uc.Token == "" {
			uc.Token = tok
		}
	}
	if n.cfg.TuneUplink != nil {
		n.cfg.TuneUplink(&uc)
	}
	u, err := uplink.New(uc, uplinkSite{n})
	if err != nil {
		return err
	}
	n.uplink = u
	return nil
}

// Uplink returns the node's uplink, nil when none is configured.
func (n *Node) Uplink() *uplink.Uplink { return n.uplink }

// uplinkSite is the node as its uplink sees it.
type uplinkSite struct{ n *Node }

var _ uplink.Site = uplinkSite{}

func (s uplinkSite) Leader() bool { return s.n.raft.Status().State == raftnode.StateLeader }

func (s uplinkSite) Vector() replication.Vector { return s.n.machine.Vector() }

// OwnVector is the machine's own vector with the site's events lane: its
// event log, whose sequence numbers are the lane's.
func (s uplinkSite) OwnVector() replication.Vector {
	v := s.n.machine.OwnVector()
	if seq := s.n.machine.LastSeq(); seq > 0 {
		v[replication.Source{Origin: s.n.cfg.SiteID, Lane: replication.LaneEvents}] = seq
	}
	return v
}

func (s uplinkSite) Changed() <-chan struct{} { return s.n.machine.Changed() }

// EventsRecorded implements uplink.EventSignaller: the uplink sends new
// access events when they commit instead of polling for them.
func (s uplinkSite) EventsRecorded() <-chan struct{} { return s.n.machine.EventsRecorded() }

// Deltas reads the site's delta log, or for its events lane its event log,
// each event as an event delta (uplink.EventDelta).
func (s uplinkSite) Deltas(src replication.Source, after uint64, max int) (ds []replication.Delta, err error) {
	if src.Lane == replication.LaneEvents {
		if src.Origin != s.n.cfg.SiteID {
			return nil, nil
		}
		err = s.n.raft.View(func(txn *badger.Txn) error {
			evs, err := sitestate.ReadEvents(txn, after, max)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				d, err := uplink.EventDelta(s.n.cfg.SiteID, ev)
				if err != nil {
					return err
				}
				ds = append(ds, d)
			}
			return nil
		})
		return ds, err
	}
	err = s.n.raft.View(func(txn *badger.Txn) error {
		ds, err = sitestate.ReadDeltas(txn, src, after, max)
		return err
	})
	return ds, err
}

// maxApplyBytes bounds the encoded deltas of one ApplyDeltas command, well
// below raftnode's MaxBatchBytes (1 MiB by default), so that a batch of
// large deltas is never refused as too large.
const maxApplyBytes = 256 << 10

// ApplyDeltas proposes the hub's deltas as ApplyDeltas commands (each
// fenced when it may revoke; more than one when the deltas are large, each
// a consecutive run, so a failure leaves a prefix applied, which the
// session's vector reflects) and waits until this node applied them.
func (s uplinkSite) ApplyDeltas(ctx context.Context, ds []replication.Delta) error {
	var chunk [][]byte
	size := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		op := &raftv1.ApplyDeltas{Deltas: chunk}
		chunk, size = nil, 0
		res, err := s.n.Propose(ctx, &raftv1.Command{Actor: "hub", Op: &raftv1.Command_ApplyDeltas{ApplyDeltas: op}})
		if err != nil {
			return err
		}
		return s.n.raft.WaitApplied(ctx, res[0].GetIndex())
	}
	for _, d := range ds {
		b, err := d.MarshalBinary()
		if err != nil {
			return err
		}
		if size+len(b) > maxApplyBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		chunk = append(chunk, b)
		size += len(b)
	}
	return flush()
}

// uplinkDetail summarises the uplink for the node's status.
func (n *Node) uplinkDetail() string {
	if n.uplink == nil {
		return ""
	}
	return formatUplinkDetail(n.uplink.Status(), n.uplink.Divergences(), time.Now())
}

// formatUplinkDetail is the status line of an uplink in state st that has
// found divs ("" when the node does not run the uplink): its link, its lag
// per lane, its last full sync, and the divergences its digests found
// (docs/replication.md §11), which need an operator.
func formatUplinkDetail(st uplink.Status, divs []replication.Divergence, now time.Time) string {
	if !st.Active {
		return ""
	}
	var b strings.Builder
	switch {
	case st.Connected:
		b.WriteString("uplink: connected")
	case st.Refused:
		b.WriteString("uplink: hub refused a batch: " + st.LastError)
	case st.LastError != "":
		b.WriteString("uplink: disconnected: " + st.LastError)
	default:
		b.WriteString("uplink: connecting")
	}
	fmt.Fprintf(&b, "; lag priority=%d normal=%d events=%d", st.Lag[replication.LanePriority], st.Lag[replication.LaneNormal],
		st.Lag[replication.LaneEvents])
	if !st.LastSync.IsZero() {
		fmt.Fprintf(&b, "; last sync %s ago", now.Sub(st.LastSync).Round(time.Second))
	}
	if len(divs) > 0 {
		parts := make([]string, len(divs))
		for i, d := range divs {
			parts[i] = fmt.Sprintf("%s from seq %d", d.Source, d.Seq)
		}
		fmt.Fprintf(&b, "; SYNC DIVERGENCE with the hub (docs/replication.md §11): %s", strings.Join(parts, ", "))
	}
	return b.String()
}
