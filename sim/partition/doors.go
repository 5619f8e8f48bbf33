package partition

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/sim/device"
)

// ReaderCred is a commissioned reader: its device ID, door and secret.
type ReaderCred struct {
	ID     string
	Door   access.ID
	Secret string
}

// ReaderCommands returns the commands that commission n readers at door
// of site, and their credentials.
func ReaderCommands(site string, door access.ID, n int) ([]*raftv1.Command, []ReaderCred) {
	var (
		cmds  []*raftv1.Command
		creds []ReaderCred
	)
	for i := range n {
		c := ReaderCred{ID: NewID(), Door: door, Secret: fmt.Sprintf("partition-reader-secret-%d-%s", i, NewID())}
		creds = append(creds, c)
		cmds = append(cmds, &raftv1.Command{Op: &raftv1.Command_PutDevice{PutDevice: &accessv1.Device{
			Id: c.ID, SiteId: site, Kind: accessv1.DeviceKind_DEVICE_KIND_READER, Name: fmt.Sprintf("reader %d", i+1),
			DoorId: string(door), SecretHash: access.HashSecret([]byte(c.Secret))}}})
	}
	return cmds, creds
}

// DialReader connects the reader cred to broker (a node's MQTTAddr).
func DialReader(ctx context.Context, site, broker string, cred ReaderCred) (*device.Reader, error) {
	return device.DialReader(ctx, device.ReaderConfig{
		Config: device.Config{Broker: broker, Device: mqttproto.Device{Site: site, Kind: mqttproto.KindReader, ID: cred.ID},
			Secret: cred.Secret},
		Door: cred.Door,
	})
}

// Tapper presents cards at doors over MQTT in a loop, one reader per node
// of a site, and records every decision in a History. Stop ends it.
type Tapper struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	readers []*device.Reader
	mu      sync.Mutex
	taps    int
}

// TapPeriod paces each reader's rounds of taps: a load, not a wait.
const TapPeriod = 2 * time.Millisecond

// StartTapper dials creds[i] to the broker of nodes[i] of site and taps,
// on each reader, every card cards returns, round after round, until
// Stop. Taps that get no decision (a node stopping) are not recorded.
func StartTapper(ctx context.Context, site *Site, hist *History, creds []ReaderCred, cards func() []access.CardNumber) (*Tapper, error) {
	nodes := site.Nodes()
	if len(creds) < len(nodes) {
		return nil, access.Errorf(access.Invalid, "partition: %d readers for %d nodes", len(creds), len(nodes))
	}
	tctx, cancel := context.WithCancel(context.Background())
	tp := &Tapper{cancel: cancel}
	for i, n := range nodes {
		r, err := DialReader(ctx, site.ID(), n.MQTTAddr(), creds[i])
		if err != nil {
			tp.Stop()
			return nil, fmt.Errorf("partition: reader at %s: %w", n.Raft().Status().NodeID, err)
		}
		tp.readers = append(tp.readers, r)
		tp.wg.Add(1)
		go func() {
			defer tp.wg.Done()
			tick := time.NewTicker(TapPeriod)
			defer tick.Stop()
			for tctx.Err() == nil {
				for _, card := range cards() {
					res, err := r.Tap(tctx, card, 2*time.Second)
					if err != nil {
						continue
					}
					hist.RecordTap(Tap{At: res.Sent, Site: site.ID(), Node: res.Decision.Node, Door: r.Door(), Card: card,
						Grant: res.Decision.Grant, Reason: res.Decision.Reason, Mode: res.Decision.Mode})
					tp.mu.Lock()
					tp.taps++
					tp.mu.Unlock()
				}
				select {
				case <-tctx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	return tp, nil
}

// Taps returns how many decisions were recorded so far.
func (tp *Tapper) Taps() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.taps
}

// Stop ends the taps and disconnects the readers. It is idempotent.
func (tp *Tapper) Stop() {
	tp.cancel()
	tp.wg.Wait()
	for _, r := range tp.readers {
		_ = r.Close()
	}
	tp.readers = nil
}
