package negotiate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sessionPair is a broker's and a provider's side of one session over an
// in-memory pipe; accept serves the provider's negotiations.
func sessionPair(t *testing.T, accept func(Exchange)) (broker, provider *Session) {
	t.Helper()
	bc, pc := net.Pipe()
	broker = NewSession(bc, bc.Close, true)
	provider = NewSession(pc, pc.Close, false)
	go func() { _ = broker.Serve(nil) }()
	go func() { _ = provider.Serve(accept) }()
	t.Cleanup(func() { _ = broker.Close(); _ = provider.Close() })
	return broker, provider
}

func recvWithin(t *testing.T, x Exchange, d time.Duration) (Envelope, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	return x.Recv(ctx)
}

func cfpEnv(t *testing.T, id string) Envelope {
	t.Helper()
	env, err := Plain(KindCFP, CFP{V: 1, ID: id, TaskID: "t-" + id})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Many negotiations share one session, each seeing only its own
// messages; one the broker closes unfinished is released.
func TestSessionCarriesConcurrentNegotiations(t *testing.T) {
	var confirmed, released atomic.Int32
	accept := func(x Exchange) {
		defer x.Close()
		env, err := recvWithin(t, x, 5*time.Second)
		if err != nil || env.Kind != KindCFP {
			return
		}
		var c CFP
		if (Wire{}).Open(env, KindCFP, "", &c) != nil {
			return
		}
		bid, _ := Plain(KindBid, BidMsg{V: 1, CFP: c.ID, TaskID: c.TaskID})
		if x.Send(bid) != nil {
			return
		}
		env, err = recvWithin(t, x, 5*time.Second)
		switch {
		case err != nil:
		case env.Kind == KindRelease:
			released.Add(1)
		case env.Kind == KindAward:
			var aw AwardMsg
			if (Wire{}).Open(env, KindAward, "", &aw) == nil && aw.CFP == c.ID {
				conf, _ := Plain(KindConfirm, ConfirmMsg{V: 1, CFP: c.ID})
				if x.Send(conf) == nil {
					confirmed.Add(1)
				}
			}
		}
	}
	broker, _ := sessionPair(t, accept)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			x, err := broker.Open(id)
			if err != nil {
				errs <- err
				return
			}
			defer x.Close()
			if err := x.Send(cfpEnv(t, id)); err != nil {
				errs <- err
				return
			}
			env, err := recvWithin(t, x, 5*time.Second)
			var bid BidMsg
			if err != nil || (Wire{}).Open(env, KindBid, "", &bid) != nil || bid.CFP != id {
				errs <- fmt.Errorf("%s: answer %q %+v, %v; want its own bid", id, env.Kind, bid, err)
				return
			}
			if i%2 == 1 {
				return // closed unfinished: released
			}
			aw, _ := Plain(KindAward, AwardMsg{V: 1, CFP: id})
			if err := x.Send(aw); err != nil {
				errs <- err
				return
			}
			env, err = recvWithin(t, x, 5*time.Second)
			if err != nil || env.Kind != KindConfirm || env.CFP != id {
				errs <- fmt.Errorf("%s: after the award %q for %q, %v; want its confirm", id, env.Kind, env.CFP, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (confirmed.Load() != n/2 || released.Load() != n/2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if confirmed.Load() != n/2 || released.Load() != n/2 {
		t.Errorf("provider confirmed %d and saw %d released, want %d and %d", confirmed.Load(), released.Load(), n/2, n/2)
	}
}

// A message that names no negotiation resets the session: every
// negotiation on it ends at once, on both sides.
func TestSessionResetOnAMessageWithoutNegotiation(t *testing.T) {
	started := make(chan Exchange, 1)
	broker, provider := sessionPair(t, func(x Exchange) { started <- x })
	x, _ := broker.Open("c1")
	if err := x.Send(cfpEnv(t, "c1")); err != nil {
		t.Fatal(err)
	}
	px := <-started
	if env, err := recvWithin(t, px, 5*time.Second); err != nil || env.Kind != KindCFP {
		t.Fatalf("provider got %q, %v; want the cfp", env.Kind, err)
	}
	aw, _ := Plain(KindAward, AwardMsg{V: 1, CFP: "c1"}) // no envelope cfp field
	if err := broker.write(aw); err != nil {
		t.Fatal(err)
	}
	if _, err := recvWithin(t, px, 5*time.Second); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("provider's negotiation: err = %v, want ErrSessionEnded", err)
	}
	if _, err := recvWithin(t, x, 5*time.Second); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("broker's negotiation: err = %v, want ErrSessionEnded", err)
	}
	select {
	case <-provider.Done():
	case <-time.After(5 * time.Second):
		t.Error("provider's session still runs")
	}
	if _, err := broker.Open("c2"); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("Open on an ended session: err = %v", err)
	}
}

// An award for a negotiation the provider already ended is declined at
// once, so the broker does not wait for a confirm; a broker's wait ends
// with its context.
func TestSessionDeclinesAnAwardForAnEndedNegotiation(t *testing.T) {
	broker, _ := sessionPair(t, func(x Exchange) { _ = x.Close() }) // ends every negotiation at once
	x, _ := broker.Open("c1")
	if err := x.Send(cfpEnv(t, "c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := recvWithin(t, x, 50*time.Millisecond); !errors.Is(err, ErrCut) {
		t.Fatalf("no answer: err = %v, want ErrCut", err)
	}
	aw, _ := Plain(KindAward, AwardMsg{V: 1, CFP: "c1"})
	if err := x.Send(aw); err != nil {
		t.Fatal(err)
	}
	env, err := recvWithin(t, x, 5*time.Second)
	if err != nil || env.Kind != KindDecline {
		t.Errorf("award after the provider ended: %q, %v; want a decline", env.Kind, err)
	}
}

// More messages for one negotiation than it can have reset the session.
func TestSessionResetOnAFlood(t *testing.T) {
	block := make(chan struct{})
	broker, provider := sessionPair(t, func(x Exchange) { <-block })
	defer close(block)
	x, _ := broker.Open("c1")
	for range inboxSize + 1 {
		if err := x.Send(cfpEnv(t, "c1")); err != nil {
			break
		}
	}
	select {
	case <-provider.Done():
	case <-time.After(5 * time.Second):
		t.Error("a flooded session still runs")
	}
}

// A session is closed idle only when no negotiation runs on it and none
// ran for the idle time; Open fails on it afterwards.
func TestSessionClosesOnlyWhenIdle(t *testing.T) {
	broker, provider := sessionPair(t, func(x Exchange) {})
	x, _ := broker.Open("c1")
	later := time.Now().Add(time.Hour)
	if broker.closeIfIdle(later, time.Minute) {
		t.Fatal("closed with a negotiation open")
	}
	_ = x.Close()
	if broker.closeIfIdle(time.Now(), time.Minute) {
		t.Fatal("closed a session used just now")
	}
	if !broker.closeIfIdle(later, time.Minute) {
		t.Fatal("an idle session was not closed")
	}
	if _, err := broker.Open("c2"); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("Open after the idle close: err = %v", err)
	}
	select {
	case <-provider.Done():
	case <-time.After(5 * time.Second):
		t.Error("the provider's side still runs")
	}
}
