package broker

import (
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/rules"
)

// noteTTL bounds how long a broker trusts what it learned about a
// provider over the provider's own advert.
const noteTTL = 3 * time.Second

// view is what a broker learned about providers since their last adverts:
// the capacity it awarded them and their declines for want of capacity.
// Adverts are periodic and reach every broker at once, so without it
// every broker ranks the same providers first until their next advert
// and piles its tasks on them (herding). A note lasts until a newer
// advert or noteTTL, whichever comes first.
type view struct {
	mu    sync.Mutex
	notes map[string]*note
}

type note struct {
	seq  uint64             // the advert seq the note amends
	at   time.Time          // when the note was last written
	used map[string]float64 // capacity awarded since that advert
	full bool               // declined for capacity since that advert
}

func newView() *view { return &view{notes: map[string]*note{}} }

// current returns the live note for provider at advert seq, or nil;
// v.mu held.
func (v *view) current(provider string, seq uint64, now time.Time) *note {
	n := v.notes[provider]
	if n == nil || n.seq != seq || now.Sub(n.at) > noteTTL {
		delete(v.notes, provider)
		return nil
	}
	return n
}

// note returns the note for provider at seq, creating it; v.mu held.
func (v *view) note(provider string, seq uint64, now time.Time) *note {
	n := v.current(provider, seq, now)
	if n == nil {
		n = &note{seq: seq, used: map[string]float64{}}
		v.notes[provider] = n
	}
	n.at = now
	return n
}

// awarded records capacity given to provider after its advert seq.
func (v *view) awarded(provider string, seq uint64, res map[string]float64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.note(provider, seq, time.Now())
	for k, q := range res {
		n.used[k] += q
	}
}

// declined records a decline; one for want of capacity marks the
// provider full until its next advert.
func (v *view) declined(provider string, seq uint64, reasons []string) {
	if !capacityDecline(reasons) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.note(provider, seq, time.Now()).full = true
}

// freed forgets that provider was full: one of its attempts ended.
func (v *view) freed(provider string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if n := v.notes[provider]; n != nil {
		n.full = false
	}
}

// amend applies the notes to a provider built from its advert seq: free
// capacity less what was awarded, none at all after a capacity decline.
func (v *view) amend(p *rules.Provider, seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.current(p.ID, seq, time.Now())
	if n == nil {
		return
	}
	free := make(map[string]float64, len(p.Free))
	for k, q := range p.Free {
		if n.full {
			free[k] = 0
		} else {
			free[k] = max(0, q-n.used[k])
		}
	}
	p.Free = free
}

// capacityDecline reports whether a decline says the provider is short
// of capacity (reasons starting "capacity:", see PROTOCOL.md).
func capacityDecline(reasons []string) bool {
	for _, r := range reasons {
		if strings.HasPrefix(r, "capacity:") {
			return true
		}
	}
	return false
}
