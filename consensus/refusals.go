package consensus

import (
	"errors"
	"sync"
)

// Refusal kinds counted by Refusals (status and /metrics show them).
const (
	RefusedRaftInbound  = "raft_stranger_inbound"  // raft stream from a non-member
	RefusedRaftOutbound = "raft_stranger_outbound" // raft dial to a non-member
	RefusedJoin         = "join"                   // unsigned, forged, expired or foreign join request
	RefusedPropose      = "propose"                // entry refused at propose (schema, size, signature, author)
	RefusedApply        = "apply"                  // committed entry refused by the FSM (recorded as refused)
)

// ErrUnauthorized: the entry's author is not entitled to its type (a
// membership entry by a non-voter, a settlement not by the payer, a task
// event not by the party its kind needs).
var ErrUnauthorized = errors.New("consensus: author not entitled to this entry")

// Counts counts events by kind (refusals here and in the agent); the zero
// value is ready to use and safe for concurrent use.
type Counts struct {
	mu sync.Mutex
	m  map[string]uint64
}

// Add counts one event of kind.
func (r *Counts) Add(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]uint64{}
	}
	r.m[kind]++
}

// Snapshot returns a copy of the counts.
func (r *Counts) Snapshot() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.m))
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

func (l *Ledger) countRefusal(kind string) { l.refused.Add(kind) }

// Refusals returns how many requests and entries this node refused, by
// kind (Refused* constants); raft streams refused by the transport gate
// are included.
func (l *Ledger) Refusals() map[string]uint64 {
	out := l.refused.Snapshot()
	for k, v := range l.fsm.refused.Snapshot() {
		out[k] += v
	}
	in, outb := l.RaftRefused()
	if in > 0 {
		out[RefusedRaftInbound] = in
	}
	if outb > 0 {
		out[RefusedRaftOutbound] = outb
	}
	return out
}
