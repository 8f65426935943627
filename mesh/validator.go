package mesh

import (
	"context"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Rejection reasons counted by the Validator.
const (
	ReasonOversized = "oversized"
	ReasonMalformed = "malformed"
	ReasonSigner    = "forged_signer"
	ReasonReplayed  = "replayed"
	ReasonClock     = "clock_skew"
	ReasonRate      = "rate_limited"
)

// Per-provider advert rate limit: a token bucket of AdvertBurst adverts
// refilled at AdvertRate per second. An honest provider republishes at
// most once per RepublishGap (≥ 100 ms); a flood beyond it is dropped
// (ignored, so forwarders are not penalised) and counted.
const (
	AdvertRate  = 10.0
	AdvertBurst = 20.0
)

// ValidatorStats counts the Validator's verdicts.
type ValidatorStats struct {
	Accepted uint64            `json:"accepted"`
	Rejected map[string]uint64 `json:"rejected"`
}

// Validator is the gossipsub validator of AdvertsTopic. It rejects
// oversized, malformed, replayed and stale adverts and adverts whose
// provider is not the message's signer, so peer scoring penalises senders.
type Validator struct {
	maxSkew time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu       sync.Mutex
	lastSeq  map[string]seen
	accepted uint64
	rejected map[string]uint64
}

type seen struct {
	seq    uint64
	time   time.Time
	tokens float64 // rate-limit bucket, refilled from time
}

// NewValidator makes a validator allowing maxSkew between clocks.
func NewValidator(maxSkew time.Duration, now func() time.Time, log *slog.Logger) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{maxSkew: maxSkew, now: now, log: log, lastSeq: map[string]seen{}, rejected: map[string]uint64{}}
}

// Validate is a pubsub.ValidatorEx for AdvertsTopic. On accept it stores
// the decoded advert in msg.ValidatorData.
func (v *Validator) Validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	a, reason := v.check(msg.GetFrom(), msg.GetData())
	switch reason {
	case "":
	case ReasonReplayed, ReasonRate:
		// Gossip may deliver one publisher's adverts out of order through
		// different peers: drop a stale one without penalising the honest
		// forwarder. A replay older than the clock window is rejected by
		// its time instead.
		v.count(reason)
		return pubsub.ValidationIgnore
	default:
		v.count(reason)
		return pubsub.ValidationReject
	}
	msg.ValidatorData = a
	return pubsub.ValidationAccept
}

// check returns the decoded advert, or the rejection reason.
func (v *Validator) check(from peer.ID, data []byte) (*Advert, string) {
	if len(data) > MaxAdvertSize {
		v.log.Debug("advert rejected", "reason", ReasonOversized, "from", from, "size", len(data))
		return nil, ReasonOversized
	}
	a, err := DecodeAdvert(data)
	if err != nil {
		v.log.Debug("advert rejected", "reason", ReasonMalformed, "from", from, "err", err)
		return nil, ReasonMalformed
	}
	if a.Provider != from.String() {
		v.log.Warn("advert rejected: provider is not the signer", "provider", a.Provider, "signer", from)
		return nil, ReasonSigner
	}
	now := v.now()
	if d := now.Sub(a.Time); d > v.maxSkew || d < -v.maxSkew {
		v.log.Debug("advert rejected", "reason", ReasonClock, "from", from, "skew", d)
		return nil, ReasonClock
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	last, ok := v.lastSeq[a.Provider]
	if ok && a.Seq <= last.seq {
		v.log.Debug("advert rejected", "reason", ReasonReplayed, "from", from, "seq", a.Seq, "last", last.seq)
		return nil, ReasonReplayed
	}
	tokens := AdvertBurst
	if ok {
		tokens = min(AdvertBurst, last.tokens+now.Sub(last.time).Seconds()*AdvertRate)
	}
	if tokens < 1 {
		v.lastSeq[a.Provider] = seen{seq: last.seq, time: now, tokens: tokens}
		return nil, ReasonRate
	}
	v.lastSeq[a.Provider] = seen{seq: a.Seq, time: now, tokens: tokens - 1}
	v.accepted++
	return a, ""
}

func (v *Validator) count(reason string) {
	v.mu.Lock()
	v.rejected[reason]++
	v.mu.Unlock()
}

// Stats returns a copy of the counters.
func (v *Validator) Stats() ValidatorStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := make(map[string]uint64, len(v.rejected))
	for k, n := range v.rejected {
		r[k] = n
	}
	return ValidatorStats{Accepted: v.accepted, Rejected: r}
}

// prune forgets sequence numbers older than the clock-skew window: an
// advert that old is rejected by its time anyway.
func (v *Validator) prune() {
	cutoff := v.now().Add(-2 * v.maxSkew)
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, s := range v.lastSeq {
		if s.time.Before(cutoff) {
			delete(v.lastSeq, k)
		}
	}
}
