package results

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"golang.org/x/sync/singleflight"

	"github.com/pcm-mesh/pcm/drivers/archive"
	"github.com/pcm-mesh/pcm/mesh"
)

// Errors a fetch reports per holder.
var (
	ErrCorrupt   = errors.New("archive does not match its digest")
	ErrTruncated = errors.New("transfer cut short")
	// ErrRefused: a holder's access rules refused the request.
	ErrRefused = errors.New("refused")
	// errUnavailable: the holder does not have it (any more) or did not
	// understand the request; another holder may do.
	errUnavailable = errors.New("unavailable")
	// errNotYet: the holder's ledger does not show the attempt's end yet;
	// the same holder is asked again shortly.
	errNotYet = errors.New("not known to the holder yet")
)

// NotYetWait bounds how long a fetch keeps asking a holder whose ledger
// lags (answer "not_yet") before it turns to the next holder.
const NotYetWait = 20 * time.Second

// Dialer opens streams to peers; *mesh.Node is one.
type Dialer interface {
	NewStream(ctx context.Context, peerID string, p protocol.ID) (network.Stream, error)
}

// Want is the archive a fetch is for, as the ledger event names it.
type Want struct {
	Digest string
	// Size is the archive's size from the ledger event; 0 when unknown
	// (an input named by digest only): then each holder's answer is
	// taken, up to MaxSize, and no partial file is resumed.
	Size        int64
	MaxSize     int64
	TaskID      string
	AgreementID string
	// For, when set, fetches it as an input of another task.
	For *Delegation
}

// Progress is told the bytes held so far and the total.
type Progress func(done, total int64)

// Fetcher fetches archives from holders into a Store.
type Fetcher struct {
	Store *Store
	Dial  Dialer
	Log   *slog.Logger

	group singleflight.Group // one fetch per digest at a time
	stats struct{ fetched, bytes, corrupt, truncated, refused atomic.Int64 }

	mu       sync.Mutex
	inFlight map[string]*Transfer
}

// Transfer is a fetch in progress.
type Transfer struct {
	Digest string `json:"digest"`
	Holder string `json:"holder"`
	Done   int64  `json:"done"`
	Total  int64  `json:"total"`
}

// InFlight lists the fetches in progress.
func (f *Fetcher) InFlight() []Transfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Transfer, 0, len(f.inFlight))
	for _, t := range f.inFlight {
		out = append(out, *t)
	}
	return out
}

// track records a fetch's progress until the returned func is called.
func (f *Fetcher) track(digest, holder string, progress Progress) (Progress, func()) {
	f.mu.Lock()
	if f.inFlight == nil {
		f.inFlight = map[string]*Transfer{}
	}
	t := &Transfer{Digest: digest, Holder: holder}
	f.inFlight[digest] = t
	f.mu.Unlock()
	return func(done, total int64) {
			f.mu.Lock()
			t.Done, t.Total = done, total
			f.mu.Unlock()
			if progress != nil {
				progress(done, total)
			}
		}, func() {
			f.mu.Lock()
			delete(f.inFlight, digest)
			f.mu.Unlock()
		}
}

// FetchStats count what fetches met.
type FetchStats struct {
	Fetched   int64 `json:"fetched"`   // archives fetched and verified
	Bytes     int64 `json:"bytes"`     // bytes received
	Corrupt   int64 `json:"corrupt"`   // transfers dropped for a wrong digest or size
	Truncated int64 `json:"truncated"` // transfers cut short (resumed from the next holder)
	Refused   int64 `json:"refused"`   // holders that refused
}

// Stats returns the fetch counters.
func (f *Fetcher) Stats() FetchStats {
	return FetchStats{Fetched: f.stats.fetched.Load(), Bytes: f.stats.bytes.Load(), Corrupt: f.stats.corrupt.Load(),
		Truncated: f.stats.truncated.Load(), Refused: f.stats.refused.Load()}
}

// Fetch returns the archive w names, from the Store if it holds it, else
// from the holders in turn: a transfer cut short resumes from the next
// holder at the byte it reached, an archive that does not hash to its
// digest is dropped and fetched again from the next holder. The error
// names every holder's failure.
func (f *Fetcher) Fetch(ctx context.Context, w Want, holders []string, progress Progress) (Meta, error) {
	if err := archive.CheckDigest(w.Digest); err != nil {
		return Meta{}, err
	}
	if m, ok := f.Store.Get(w.Digest); ok {
		return m, nil
	}
	if len(holders) == 0 {
		return Meta{}, fmt.Errorf("results %s: no agent is known to hold them (the provider, the broker and the DHT gave none)", w.Digest)
	}
	v, err, _ := f.group.Do(w.Digest, func() (any, error) { return f.fetch(ctx, w, holders, progress) })
	if err != nil {
		return Meta{}, err
	}
	return v.(Meta), nil
}

func (f *Fetcher) fetch(ctx context.Context, w Want, holders []string, progress Progress) (Meta, error) {
	if m, ok := f.Store.Get(w.Digest); ok {
		return m, nil
	}
	sizeKnown := w.Size > 0
	var errs []error
	for _, h := range holders {
		if ctx.Err() != nil {
			break
		}
		if !sizeKnown {
			w.Size = 0
		}
		m, resumed, err := f.fetchFromWhenKnown(ctx, &w, h, progress)
		if errors.Is(err, ErrCorrupt) && resumed {
			// The bytes kept from an earlier holder may be the bad ones:
			// the partial file is dropped; try this holder from the start.
			f.stats.corrupt.Add(1)
			m, _, err = f.fetchFrom(ctx, &w, h, progress)
		}
		switch {
		case err == nil:
			f.stats.fetched.Add(1)
			return m, nil
		case errors.Is(err, ErrCorrupt):
			f.stats.corrupt.Add(1)
		case errors.Is(err, ErrTruncated):
			f.stats.truncated.Add(1)
		case errors.Is(err, ErrRefused):
			f.stats.refused.Add(1)
		}
		f.Log.Info("results fetch from holder failed", "digest", w.Digest, "holder", h, "err", err)
		errs = append(errs, fmt.Errorf("holder %s: %w", h, err))
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return Meta{}, fmt.Errorf("results %s: %w", w.Digest, errors.Join(errs...))
}

// fetchFromWhenKnown is fetchFrom, asked again with a growing pause
// while the holder answers "not_yet" (its replica of the ledger has not
// applied the attempt's final event: it is committed, so it will), for
// up to NotYetWait.
func (f *Fetcher) fetchFromWhenKnown(ctx context.Context, w *Want, holder string, progress Progress) (Meta, bool, error) {
	deadline := time.Now().Add(NotYetWait)
	pause := 50 * time.Millisecond
	for {
		m, resumed, err := f.fetchFrom(ctx, w, holder, progress)
		if !errors.Is(err, errNotYet) || time.Now().Add(pause).After(deadline) {
			return m, resumed, err
		}
		select {
		case <-ctx.Done():
			return m, resumed, err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// fetchFrom continues the partial file from one holder.
func (f *Fetcher) fetchFrom(ctx context.Context, w *Want, holder string, progress Progress) (_ Meta, resumed bool, _ error) {
	progress, done := f.track(w.Digest, holder, progress)
	defer done()
	part := f.Store.PartPath(w.Digest)
	pf, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return Meta{}, resumed, err
	}
	defer pf.Close()
	h := archive.NewHash()
	have, err := io.Copy(h, io.LimitReader(pf, w.Size)) // unknown size: start over
	if err != nil {
		return Meta{}, resumed, err
	}
	resumed = have > 0
	if err := pf.Truncate(have); err != nil {
		return Meta{}, resumed, err
	}
	st, err := f.Dial.NewStream(ctx, holder, Protocol)
	if err != nil {
		return Meta{}, resumed, fmt.Errorf("dial: %w", err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if err := mesh.WriteFrame(st, Request{V: Version, Digest: w.Digest, Offset: have, AgreementID: w.AgreementID, For: w.For}, MaxRequest); err != nil {
		_ = st.Reset()
		return Meta{}, resumed, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReaderSize(st, chunk)
	var resp Response
	if err := mesh.ReadFrame(r, &resp, MaxRequest); err != nil {
		_ = st.Reset()
		return Meta{}, resumed, fmt.Errorf("read answer: %w", err)
	}
	if !resp.OK {
		switch resp.Code {
		case CodeForbidden:
			return Meta{}, resumed, fmt.Errorf("%w: %s", ErrRefused, resp.Error)
		case CodeNotYet:
			return Meta{}, resumed, fmt.Errorf("%w: %w: %s", errUnavailable, errNotYet, resp.Error)
		}
		return Meta{}, resumed, fmt.Errorf("%w: %s", errUnavailable, resp.Error)
	}
	if w.Size == 0 {
		if resp.Size <= 0 || w.MaxSize > 0 && resp.Size > w.MaxSize {
			_ = st.Reset()
			return Meta{}, resumed, fmt.Errorf("holder offers %d bytes; the limit is %d", resp.Size, w.MaxSize)
		}
		w.Size = resp.Size
	}
	if resp.Size != w.Size {
		_ = st.Reset()
		return Meta{}, resumed, fmt.Errorf("%w: holder has %d bytes, the ledger event says %d", ErrCorrupt, resp.Size, w.Size)
	}
	dst := io.MultiWriter(pf, h)
	buf := make([]byte, chunk)
	for have < w.Size {
		n, err := r.Read(buf[:min(int64(len(buf)), w.Size-have)])
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = st.Reset()
				return Meta{}, resumed, werr
			}
			have += int64(n)
			f.stats.bytes.Add(int64(n))
			if progress != nil {
				progress(have, w.Size)
			}
		}
		if err != nil && have < w.Size {
			_ = st.Reset()
			return Meta{}, resumed, fmt.Errorf("%w at byte %d of %d (kept for the next holder): %w", ErrTruncated, have, w.Size, err)
		}
	}
	if got := archive.Digest(h); got != w.Digest {
		_ = pf.Truncate(0)
		return Meta{}, resumed, fmt.Errorf("%w: got %s (dropped)", ErrCorrupt, got)
	}
	if err := pf.Sync(); err != nil {
		return Meta{}, resumed, err
	}
	m := Meta{Digest: w.Digest, Size: w.Size, TaskID: w.TaskID, AgreementID: w.AgreementID}
	if m.AgreementID == "" {
		m.AgreementID, m.Owner = resp.AgreementID, resp.Owner
	}
	if err := f.Store.Adopt(part, m); err != nil {
		return Meta{}, resumed, err
	}
	f.Log.Debug("results fetched", "digest", w.Digest, "holder", holder, "size", w.Size)
	return m, resumed, nil
}
