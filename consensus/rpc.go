package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Operations of the ledger protocol (PROTOCOL.md).
const (
	opJoin    = "join"
	opPropose = "propose"
	opEntries = "entries"
	opEntry   = "entry"
	opMembers = "members"
	opStatus  = "status"
	opBilling = "billing"
)

const (
	maxHops        = 4                                // forwards at most: client → client → replica → leader
	maxRequestSize = MaxFrameworkPayload + (64 << 10) // one entry plus envelope
	maxResponse    = 64 << 20                         // a page of records
	serveTimeout   = 30 * time.Second                 // one request, end to end
)

// request is one ledger protocol request: one JSON object per stream.
type request struct {
	V      int         `json:"v"`
	Op     string      `json:"op"`
	Hops   int         `json:"hops,omitempty"`
	Join   *SignedJoin `json:"join,omitempty"`   // join: the joiner's own signed request
	Entry  *Entry      `json:"entry,omitempty"`  // propose
	Filter *Filter     `json:"filter,omitempty"` // entries
	Key    string      `json:"key,omitempty"`    // entry: index or id
	Seq    uint64      `json:"seq,omitempty"`    // within a session: numbers the request
}

// response answers a request; Code names the sentinel of Error.
type response struct {
	V          int            `json:"v"`
	Error      string         `json:"error,omitempty"`
	Code       string         `json:"code,omitempty"`
	Role       Role           `json:"role,omitempty"`
	Receipt    *Receipt       `json:"receipt,omitempty"`
	Records    []Record       `json:"records,omitempty"`
	Record     *Record        `json:"record,omitempty"`
	Membership *Membership    `json:"membership,omitempty"`
	Status     *ReplicaStatus `json:"status,omitempty"`
	Leader     string         `json:"leader,omitempty"`  // the answering node's known leader
	Seq        uint64         `json:"seq,omitempty"`     // within a session: the request answered
	Session    bool           `json:"session,omitempty"` // the stream is now a session
	Billing    bool           `json:"billing,omitempty"` // billing: every replica reads billed agreements
}

// ServeConn serves one inbound /pcm/ledger/1.0.0 stream: it reads one
// request, answers it and closes conn; or, asked for a session, answers
// the session's requests until the client closes it (rpcsession.go).
//
// The requester is conn's authenticated remote peer (RemoteAddr of a
// gostream conn is the peer id); joins and admissions are decided from it,
// never from a field in the request.
func (l *Ledger) ServeConn(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(serveTimeout))
	var req request
	dec := json.NewDecoder(io.LimitReader(conn, maxRequestSize))
	if err := dec.Decode(&req); err != nil {
		_ = json.NewEncoder(conn).Encode(response{V: 1, Error: fmt.Sprintf("ledger request does not decode: %v", err), Code: "invalid"})
		return
	}
	remote := ""
	if a := conn.RemoteAddr(); a != nil {
		remote = a.String()
	}
	if req.Op == opSession {
		if err := json.NewEncoder(conn).Encode(response{V: 1, Session: true}); err == nil {
			l.serveSession(conn, io.MultiReader(dec.Buffered(), conn), remote)
		}
		return
	}
	ctx, cancel := l.bounded(context.Background(), serveTimeout-time.Second)
	defer cancel()
	resp := l.handle(ctx, req, remote)
	resp.V = 1
	if resp.Leader == "" {
		// Lets clients talk to the leader directly next time; a client
		// passes on the leader it was told of, so clients that joined
		// through clients learn it too.
		resp.Leader = l.knownLeader()
	}
	_ = json.NewEncoder(conn).Encode(resp)
}

func (l *Ledger) handle(ctx context.Context, req request, remote string) response {
	var resp response
	var err error
	switch req.Op {
	case opJoin:
		resp.Role, err = l.handleJoin(ctx, req.Join, remote, req.Hops)
	case opPropose:
		if req.Entry == nil {
			err = fmt.Errorf("propose request without an entry: %w", ErrInvalid)
			break
		}
		var r Receipt
		r, err = l.propose(ctx, *req.Entry, req.Hops, true)
		resp.Receipt = &r
	case opEntries:
		f := Filter{}
		if req.Filter != nil {
			f = *req.Filter
		}
		resp.Records, err = l.entries(ctx, f, req.Hops)
	case opEntry:
		var r Record
		r, err = l.Entry(ctx, req.Key)
		resp.Record = &r
	case opMembers:
		var m Membership
		m, err = l.members(ctx, req.Hops)
		resp.Membership = &m
	case opStatus:
		s := l.status()
		resp.Status = &s
	case opBilling:
		resp.Billing, err = l.billing(ctx, req.Hops)
	default:
		err = fmt.Errorf("ledger operation %q is unknown: %w", req.Op, ErrInvalid)
	}
	if err != nil {
		return response{Error: err.Error(), Code: errorCode(err)}
	}
	return resp
}

// call sends one request to peer id. An error before the request was sent
// wraps errRetry; an error after it was sent (the peer may have acted on it)
// wraps ErrOutcomeUnknown for proposals.
func (l *Ledger) call(ctx context.Context, id string, req request) (response, error) {
	resp, err := l.roundTrip(ctx, id, req)
	if err != nil {
		return resp, err
	}
	if resp.Leader != "" && resp.Leader != l.cfg.ID {
		l.setLeaderHint(resp.Leader)
	}
	if err := decodeError(resp.Code, resp.Error); err != nil {
		if errors.Is(err, ErrNotLeader) {
			l.dropLeaderHint(id)
		}
		return resp, err
	}
	if req.Op == opPropose && resp.Receipt == nil {
		return resp, fmt.Errorf("ledger peer %s answered a proposal without a receipt: %w", shortID(id), ErrOutcomeUnknown)
	}
	return resp, nil
}

// roundTrip sends req to peer id and reads its answer: on the session
// with the peer, or, with a peer of an earlier version, on a stream of
// its own.
func (l *Ledger) roundTrip(ctx context.Context, id string, req request) (response, error) {
	for range 2 {
		s, err := l.sessionTo(ctx, id)
		if err != nil {
			return response{}, err
		}
		if s == nil {
			break
		}
		resp, sent, err := s.call(ctx, req)
		if sent {
			if err != nil {
				l.dropLeaderHint(id)
			}
			return resp, err
		}
		// The session had ended: open another.
	}
	return l.callStream(ctx, id, req)
}

// callStream sends req on a stream of its own (/pcm/ledger/1.0.0 without
// a session).
func (l *Ledger) callStream(ctx context.Context, id string, req request) (response, error) {
	var resp response
	if l.cfg.Dial == nil {
		return resp, fmt.Errorf("ledger config has no Dial, cannot reach %s: %w", shortID(id), ErrNotLeader)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := l.cfg.Dial(dctx, id)
	cancel()
	if err != nil {
		l.logger.Debug("dial ledger peer", "peer", shortID(id), "err", err)
		l.dropLeaderHint(id)
		return resp, fmt.Errorf("dial ledger peer %s: %w: %w", shortID(id), errRetry, err)
	}
	answered := false
	defer func() {
		if answered {
			_ = conn.Close()
		} else {
			abort(conn)
		}
	}()
	// A call must end with its context, also where streams ignore
	// deadlines (libp2p's mocknet).
	stop := context.AfterFunc(ctx, func() { abort(conn) })
	defer stop()
	req.V = 1
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return resp, l.lostCall(req, id, err)
	}
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(&resp); err != nil {
		l.dropLeaderHint(id)
		return resp, l.lostCall(req, id, err)
	}
	answered = true
	return resp, nil
}

// abort ends a stream that got no answer, at once. Close is not enough:
// libp2p opens a stream to a peer known to speak the protocol lazily and
// its Close first waits, up to 10 s, for the peer's half of that
// handshake, which a peer whose network went down never sends; so a call
// with a 2 s limit took 12 s (issue #12). Reset does not wait.
func abort(conn net.Conn) {
	if r, ok := conn.(interface{ Reset() error }); ok {
		_ = r.Reset()
		return
	}
	_ = conn.SetDeadline(time.Now())
	_ = conn.Close()
}

func (l *Ledger) lostCall(req request, id string, err error) error {
	if req.Op == opPropose {
		return fmt.Errorf("ledger peer %s: %w: %w", shortID(id), ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("ledger peer %s: %w: %w", shortID(id), errRetry, err)
}

// isRetry reports whether err means the request never took effect.
func isRetry(err error) bool {
	return errors.Is(err, errRetry) || errors.Is(err, ErrNotLeader)
}

// bounded derives a context that also ends when the ledger closes.
func (l *Ledger) bounded(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
