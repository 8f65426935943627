package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Config configures one ledger replica.
type Config struct {
	ID  string // this node's id (libp2p peer ID string): raft ServerID and ServerAddress
	Dir string // <data-dir>/ledger: the agent's one Badger database (fsm/, see OpenDB), snapshots/
	// DB, when set, is the database OpenDB opened in Dir, shared with the
	// caller, who closes it after the Ledger; when nil, Open opens it and
	// Close closes it.
	DB           *badger.DB
	Bootstrap    bool          // bootstrap a one-node cluster if no raft state exists
	MaxVoters    int           // voters at most; default 3
	MaxNonVoters int           // non-voters at most, beyond that Join answers RoleClient; default 6
	VoterTimeout time.Duration // a voter (or non-voter) unreachable this long is removed; default 30s

	Transport raft.Transport // required; the ledger closes it on Close
	// Dial opens a /pcm/ledger/1.0.0 stream to a peer. Without it the node
	// can neither join nor forward proposals and reads.
	Dial     func(ctx context.Context, id string) (net.Conn, error)
	Verifier Verifier // required
	// Signer, when set, lets the leader record membership changes as
	// membership notes signed by this node.
	Signer Signer
	Logger *slog.Logger

	// Raft timing; defaults suit a loopback or LAN mesh.
	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default 500ms
	CommitTimeout      time.Duration // default 5ms
	SnapshotInterval   time.Duration // default 2m
	SnapshotThreshold  uint64        // logs between snapshots; default 8192
	TrailingLogs       uint64        // logs kept after a snapshot; default 10240

	// Admit is the admission policy for replicas: AdmitAllowList (the
	// default) or AdmitOpen. Voters and NonVoters are this node's
	// allow-lists (peer ids), used when it leads; voters can also admit
	// peers through the ledger (ChangeAdmitVoter entries).
	Admit     string
	Voters    []string
	NonVoters []string

	// CheckPayload, when set, checks the content of an entry's payload
	// beyond its schema (a framework entry must hold a valid framework);
	// it must be deterministic. It runs at propose time and on apply on
	// every replica.
	CheckPayload func(typ string, payload []byte) error

	// MaxBatch is the most entries coalesced into one raft log; default 512.
	MaxBatch int
	// MaxInflight is the most batches in flight on the leader; default 4.
	MaxInflight int
}

// DefaultConfig returns a Config with every default set; ID, Dir,
// Transport, Dial and Verifier remain to be set.
func DefaultConfig() Config {
	return Config{
		MaxVoters:          3,
		MaxNonVoters:       6,
		Admit:              AdmitAllowList,
		VoterTimeout:       30 * time.Second,
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		MaxBatch:           512,
		MaxInflight:        4,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = d.MaxVoters
	}
	if c.MaxNonVoters == 0 {
		c.MaxNonVoters = d.MaxNonVoters
	}
	set(&c.VoterTimeout, d.VoterTimeout)
	set(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	set(&c.ElectionTimeout, d.ElectionTimeout)
	set(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	set(&c.CommitTimeout, d.CommitTimeout)
	set(&c.SnapshotInterval, d.SnapshotInterval)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.Admit == "" {
		c.Admit = AdmitAllowList
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c, naming the field and the fix.
func (c Config) Validate() error {
	var errs []error
	add := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	add(c.ID != "", "ledger config: ID is empty; set it to this node's peer id")
	add(c.Dir != "", "ledger config: Dir is empty; set it to <data-dir>/ledger")
	add(c.Transport != nil, "ledger config: Transport is nil; build one with NewStreamTransport")
	add(c.Verifier != nil, "ledger config: Verifier is nil; it checks entry signatures")
	add(c.MaxVoters >= 1, fmt.Sprintf("ledger config: MaxVoters is %d; it must be at least 1 (3 tolerates one failure)", c.MaxVoters))
	add(c.MaxNonVoters >= 0, "ledger config: MaxNonVoters must not be negative")
	add(c.VoterTimeout > 0, "ledger config: VoterTimeout must be positive")
	add(c.MaxBatch >= 1, "ledger config: MaxBatch must be at least 1")
	add(c.MaxInflight >= 1, "ledger config: MaxInflight must be at least 1")
	add(c.Admit == AdmitAllowList || c.Admit == AdmitOpen, fmt.Sprintf("ledger config: Admit is %q; use %q or %q", c.Admit, AdmitAllowList, AdmitOpen))
	add(c.LeaderLeaseTimeout <= c.HeartbeatTimeout, "ledger config: LeaderLeaseTimeout must not exceed HeartbeatTimeout")
	return errors.Join(errs...)
}

// raftConfig builds hashicorp/raft's configuration.
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.NoLegacyTelemetry = true
	rc.Logger = newHCLogger(c.Logger.With("component", "raft"))
	return rc
}
