package broker

import (
	"fmt"
	"slices"
	"time"

	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// drive negotiates a task until placed, re-negotiates after losses and
// retries, and expires it at its deadline.
func (b *Broker) drive(id string, kick chan struct{}) {
	backoff := backoffMin
	for {
		t, ok := b.Get(id)
		if !ok || tasks.Final(t.State) {
			return
		}
		var wait time.Duration
		switch t.State {
		case tasks.StateQueued, tasks.StateNegotiating:
			if time.Now().After(t.Deadline) {
				b.update(id, func(t *tasks.Task) bool {
					t.SetState(tasks.StateExpired, "deadline passed before any provider took it; see `pcm-agent tasks explain "+t.ID+"`", time.Now().UTC())
					return true
				})
				return
			}
			select {
			case b.rounds <- struct{}{}:
			case <-b.d.Ctx.Done():
				return
			}
			out := b.round(t)
			<-b.rounds
			if out == roundPlaced {
				backoff = backoffMin
				continue
			}
			// The round's own updates kicked us; only a later kick (a
			// re-queue, a cancel) should cut the backoff short.
			select {
			case <-kick:
			default:
			}
			wait = min(backoff, time.Until(t.Deadline)+time.Millisecond)
			backoff = min(2*backoff, backoffMax)
			if out == roundStarved {
				wake, leave := b.gate.park()
				select {
				case <-b.d.Ctx.Done():
				case <-kick:
				case <-wake:
				case <-time.After(wait):
				}
				leave()
				continue
			}
		default:
			wait = time.Minute
		}
		select {
		case <-b.d.Ctx.Done():
			return
		case <-kick:
		case <-time.After(wait):
		}
	}
}

// candidates converts the resource table into rules providers for fw.
// pool is the providers a round considers, as this broker sees them.
type Pool struct {
	List []*rules.Provider
	ByID map[string]*rules.Provider
	seq  map[string]uint64 // advert seq each provider was built from
}

// candidates are the known providers but the excluded, from their
// adverts amended by what this broker learned since (see view); this
// agent itself from its own live state.
func (b *Broker) Candidates(fw *rules.Framework, exclude []string) Pool {
	pl := Pool{ByID: map[string]*rules.Provider{}, seq: map[string]uint64{}}
	for _, e := range b.d.Mesh.Table().List(nil) {
		ad := e.Advert
		if slices.Contains(exclude, ad.Provider) {
			continue
		}
		p := providerFromAdvert(ad, fw)
		if ad.Provider == b.self {
			p = b.d.Provider.SelfView(fw)
		} else {
			b.view.amend(p, ad.Seq)
		}
		pl.List = append(pl.List, p)
		pl.ByID[p.ID] = p
		pl.seq[p.ID] = ad.Seq
	}
	return pl
}

func providerFromAdvert(ad *mesh.Advert, fw *rules.Framework) *rules.Provider {
	var names []string
	for _, d := range ad.Drivers {
		names = append(names, d.Name)
	}
	fws := slices.Clone(ad.Frameworks)
	return &rules.Provider{ID: ad.Provider, Drivers: names, Attrs: ad.Attrs, Frameworks: fws, Total: ad.Total, Free: ad.Free, Prices: ad.Prices[fw.ID()], Running: ad.Running}
}

// roundOutcome is how a round ended.
type roundOutcome int

const (
	roundFailed  roundOutcome = iota // not placed: retry after a backoff
	roundPlaced                      // an agreement committed
	roundStarved                     // not placed for want of capacity: wait for some to free
)

// round runs one negotiation round.
func (b *Broker) round(t *tasks.Task) roundOutcome {
	fw, err := b.d.Frameworks.Resolve(t.Framework)
	if err != nil {
		b.update(t.ID, func(t *tasks.Task) bool { t.SetState(tasks.StateQueued, err.Error(), time.Now().UTC()); return true })
		return roundFailed
	}
	b.mu.Lock()
	rt := b.parsed[t.ID]
	b.mu.Unlock()
	now := time.Now().UTC()
	ps := b.Candidates(fw, t.Excluded)
	pl := fw.PlaceFor(rt, t.ID, ps.List, now)
	if len(pl.Ranked) == 0 && len(t.Excluded) > 0 {
		// Exclusion is a preference: when no other provider can take the
		// task, an earlier one (back again) may.
		ps = b.Candidates(fw, nil)
		pl = fw.PlaceFor(rt, t.ID, ps.List, now)
		t.Excluded = nil
	}
	rd := tasks.Round{Attempt: t.Attempt, Time: now}
	starved := false // some provider would fit but for its free capacity
	for _, ev := range pl.Rejected {
		ro := tasks.RuledOut{Provider: ev.Provider}
		only := len(ev.Failures) > 0
		for _, f := range ev.Failures {
			ro.Reasons = append(ro.Reasons, f.String())
			only = only && f.Rule == "capacity"
		}
		starved = starved || only
		rd.Ruled = append(rd.Ruled, ro)
	}
	for _, ex := range t.Excluded {
		rd.Ruled = append(rd.Ruled, tasks.RuledOut{Provider: ex, Reasons: []string{"excluded: an earlier attempt on it was lost or failed"}})
	}
	k := fw.Placement.Candidates
	if k <= 0 {
		k = 3
	}
	ranked := pl.Ranked
	if len(ranked) > k {
		ranked = ranked[:k]
	}
	for _, s := range ranked {
		rd.Candidates = append(rd.Candidates, s.Provider)
	}
	if len(ranked) == 0 {
		rd.Outcome = fmt.Sprintf("no eligible provider among %d known", len(ps.List)+len(t.Excluded))
		b.finishRound(t.ID, rd, tasks.StateQueued)
		if starved {
			return roundStarved
		}
		return roundFailed
	}
	b.update(t.ID, func(t *tasks.Task) bool { t.SetState(tasks.StateNegotiating, "", now); return true })
	if b.negotiate(t, fw, rt, ranked, ps, &rd) {
		return roundPlaced
	}
	b.finishRound(t.ID, rd, tasks.StateQueued)
	for _, d := range rd.Declines {
		if capacityDecline(d.Reasons) {
			return roundStarved
		}
	}
	return roundFailed
}

func (b *Broker) finishRound(id string, rd tasks.Round, state string) {
	b.d.Metrics.Round(false)
	b.update(id, func(t *tasks.Task) bool {
		t.AddRound(rd)
		if t.State == tasks.StateQueued || t.State == tasks.StateNegotiating {
			t.SetState(state, rd.Outcome, time.Now().UTC())
		}
		return true
	})
}
