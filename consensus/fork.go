package consensus

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// PeerCheck compares this replica's chain with one other replica's.
type PeerCheck struct {
	Peer  string `json:"peer"`
	Index uint64 `json:"index"` // the peer's head
	Hash  string `json:"hash"`
	// Compared is the highest index both hold; Agree whether the two chains
	// are identical up to it. When they are not, DivergesAt is the first
	// index whose hash differs.
	Compared   uint64 `json:"compared"`
	Agree      bool   `json:"agree"`
	DivergesAt uint64 `json:"diverges_at,omitempty"`
	Error      string `json:"error,omitempty"`
}

// ForkReport is the outcome of CheckPeers.
type ForkReport struct {
	Index uint64      `json:"index"` // this replica's head
	Hash  string      `json:"hash"`
	Peers []PeerCheck `json:"peers"`
	// Diverged names the peers whose chain differs from this one.
	Diverged []string  `json:"diverged,omitempty"`
	Checked  time.Time `json:"checked"`
}

// OK reports whether every peer that answered agrees with this replica.
func (r ForkReport) OK() bool { return len(r.Diverged) == 0 }

// CheckPeers compares this replica's hash chain with every other
// replica's: at the highest index both hold, and when the hashes differ,
// by bisection, the first index where they part. Hashes chain, so two
// replicas that agree at an index agree on everything before it; a
// replica whose bytes were rewritten (and its chain recomputed so that a
// local verify passes) still disagrees with the others from the first
// rewritten record on. A client (no copy) reports ErrNotReplica.
func (l *Ledger) CheckPeers(ctx context.Context) (ForkReport, error) {
	var rep ForkReport
	if l.Role() == RoleClient {
		return rep, fmt.Errorf("check peers: %w; run it on a replica (ledger members)", ErrNotReplica)
	}
	h, _ := l.fsm.state()
	rep.Index, rep.Hash, rep.Checked = h.Index, h.Hash, time.Now().UTC()
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return rep, fmt.Errorf("read ledger configuration: %w", err)
	}
	var peers []string
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != l.cfg.ID {
			peers = append(peers, string(s.ID))
		}
	}
	rep.Peers = make([]PeerCheck, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Peers[i] = l.checkPeer(ctx, p, h)
		}()
	}
	wg.Wait()
	for _, pc := range rep.Peers {
		if pc.Error == "" && !pc.Agree {
			rep.Diverged = append(rep.Diverged, pc.Peer)
		}
	}
	return rep, nil
}

func (l *Ledger) checkPeer(ctx context.Context, peer string, mine head) PeerCheck {
	pc := PeerCheck{Peer: peer}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.call(cctx, peer, request{Op: opStatus})
	if err != nil || resp.Status == nil {
		pc.Error = fmt.Sprintf("status: %v", err)
		return pc
	}
	pc.Index, pc.Hash = resp.Status.Index, resp.Status.Hash
	pc.Compared = min(mine.Index, pc.Index)
	if pc.Compared == 0 {
		pc.Agree = true
		return pc
	}
	same := func(i uint64) (bool, error) {
		a, err := l.Entry(cctx, strconv.FormatUint(i, 10))
		if err != nil {
			return false, err
		}
		r, err := l.call(cctx, peer, request{Op: opEntry, Key: strconv.FormatUint(i, 10)})
		if err != nil || r.Record == nil {
			return false, fmt.Errorf("record %d of %s: %v", i, shortID(peer), err)
		}
		return r.Record.Hash == a.Hash && r.Record.Index == i, nil
	}
	ok, err := same(pc.Compared)
	if err != nil {
		pc.Error = err.Error()
		return pc
	}
	if ok {
		pc.Agree = true
		return pc
	}
	// The first differing index lies in (lo, hi]: lo agrees (0 always).
	lo, hi := uint64(0), pc.Compared
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := same(mid)
		if err != nil {
			pc.Error = err.Error()
			return pc
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	pc.DivergesAt = hi
	return pc
}
