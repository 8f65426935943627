package results

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pcm-mesh/pcm/drivers/archive"
	"github.com/pcm-mesh/pcm/mesh"
)

// ErrNotYet: an Authorizer cannot decide yet (its ledger lags); the
// requester is told to ask again.
var ErrNotYet = errors.New("not known here yet")

// Authorizer decides whether peer by may have the archive m (req.For set:
// as an input of that task). A refusal's text is sent to the peer.
type Authorizer func(ctx context.Context, by string, m Meta, req Request) error

// Server answers /pcm/results/1.0.0 streams from a Store.
type Server struct {
	Store     *Store
	Authorize Authorizer
	Log       *slog.Logger
	// Served, when set, is told the bytes sent per request (metrics).
	Served func(n int64)
}

// Handle serves one stream: one request, one response, the bytes.
func (s *Server) Handle(st network.Stream) {
	defer st.Close()
	by := st.Conn().RemotePeer().String()
	_ = st.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req Request
	if err := mesh.ReadFrame(bufio.NewReader(st), &req, MaxRequest); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	f, m, code, err := s.open(ctx, by, req)
	cancel()
	if err != nil {
		_ = mesh.WriteFrame(st, Response{V: Version, Error: err.Error(), Code: code}, MaxRequest)
		return
	}
	defer f.Close()
	if err := mesh.WriteFrame(st, Response{V: Version, OK: true, Size: m.Size, AgreementID: m.AgreementID, Owner: m.Owner}, MaxRequest); err != nil {
		return
	}
	if _, err := f.Seek(req.Offset, io.SeekStart); err != nil {
		_ = st.Reset()
		return
	}
	n, err := io.CopyBuffer(st, io.LimitReader(f, m.Size-req.Offset), make([]byte, chunk))
	if s.Served != nil {
		s.Served(n)
	}
	if err != nil {
		s.Log.Debug("results send cut", "digest", m.Digest, "peer", by, "sent", n, "err", err)
		_ = st.Reset()
	}
}

// open checks a request and opens the archive it asks for; a refusal
// comes with its Response code.
func (s *Server) open(ctx context.Context, by string, req Request) (io.ReadSeekCloser, Meta, string, error) {
	if req.V != Version {
		return nil, Meta{}, CodeBadRequest, fmt.Errorf("v is %d; this agent speaks %d", req.V, Version)
	}
	if err := archive.CheckDigest(req.Digest); err != nil {
		return nil, Meta{}, CodeBadRequest, fmt.Errorf("digest: %w", err)
	}
	m, ok := s.Store.Get(req.Digest)
	if !ok {
		return nil, Meta{}, CodeNotHeld, fmt.Errorf("%w: %s", ErrNotFound, req.Digest)
	}
	if req.Offset < 0 || req.Offset > m.Size {
		return nil, Meta{}, CodeBadRequest, fmt.Errorf("offset %d is outside the archive (0..%d)", req.Offset, m.Size)
	}
	if err := s.Authorize(ctx, by, m, req); errors.Is(err, ErrNotYet) {
		return nil, Meta{}, CodeNotYet, err
	} else if err != nil {
		return nil, Meta{}, CodeForbidden, err
	}
	f, m, err := s.Store.Open(req.Digest)
	if err != nil {
		return nil, Meta{}, CodeNotHeld, err // evicted meanwhile
	}
	return f, m, "", nil
}
