package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/drivers/archive"
)

// ErrNotFound: the store holds no archive with that digest.
var ErrNotFound = errors.New("results not held here")

// Meta describes one stored archive.
type Meta struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// TaskID and AgreementID are the attempt whose final ledger event
	// names the digest; access to the archive follows that task's rules.
	TaskID      string `json:"task_id"`
	AgreementID string `json:"agreement_id"`
	// Owner is the agent that uploaded the archive (no task made it);
	// it is sent only as an input of a task that agent submits.
	Owner  string    `json:"owner,omitempty"`
	Stored time.Time `json:"stored"`
	Used   time.Time `json:"used"`
}

// Budget bounds what a Store keeps.
type Budget struct {
	// MaxBytes is the most archive bytes kept (0: no limit).
	MaxBytes int64
	// Retention is how long an archive is kept after its last use
	// (0: until MaxBytes evicts it).
	Retention time.Duration
}

// Store keeps archives in one directory. Safe for concurrent use.
type Store struct {
	dir    string
	budget Budget
	log    *slog.Logger

	mu    sync.Mutex
	metas map[string]Meta
}

// OpenStore opens (creating) a store in dir and reads what it holds;
// leftovers of interrupted writes are removed, partial fetches kept.
func OpenStore(dir string, budget Budget, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(dir, "partial"), 0o700); err != nil {
		return nil, fmt.Errorf("results store %s: %w", dir, err)
	}
	s := &Store{dir: dir, budget: budget, log: log, metas: map[string]Meta{}}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("results store %s: %w", dir, err)
	}
	for _, name := range names {
		var m Meta
		b, err := os.ReadFile(name)
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		fi, serr := os.Stat(s.path(m.Digest))
		if err != nil || archive.CheckDigest(m.Digest) != nil || serr != nil || fi.Size() != m.Size {
			log.Warn("results store: dropping an unreadable entry", "file", name, "err", errors.Join(err, serr))
			_ = os.Remove(name)
			continue
		}
		s.metas[m.Digest] = m
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
	return s, nil
}

func hexOf(digest string) string { return strings.TrimPrefix(digest, archive.DigestPrefix) }

func (s *Store) path(digest string) string { return filepath.Join(s.dir, hexOf(digest)+".tar") }

// Path is the file of a held archive (a driver unpacks inputs from it).
func (s *Store) Path(digest string) string { return s.path(digest) }

// PartPath is where a fetch of digest keeps the bytes it has so far.
func (s *Store) PartPath(digest string) string {
	return filepath.Join(s.dir, "partial", hexOf(digest)+".part")
}

// Get returns the meta of a held archive.
func (s *Store) Get(digest string) (Meta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.metas[digest]
	return m, ok
}

// List returns every held archive, newest first.
func (s *Store) List() []Meta {
	s.mu.Lock()
	out := make([]Meta, 0, len(s.metas))
	for _, m := range s.metas {
		out = append(out, m)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Stored.After(out[j].Stored) })
	return out
}

// Open opens a held archive for reading and marks it used.
func (s *Store) Open(digest string) (*os.File, Meta, error) {
	s.mu.Lock()
	m, ok := s.metas[digest]
	if ok {
		m.Used = time.Now().UTC()
		s.metas[digest] = m
	}
	s.mu.Unlock()
	if !ok {
		return nil, Meta{}, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	f, err := os.Open(s.path(digest))
	if err != nil {
		return nil, Meta{}, fmt.Errorf("results %s: %w", digest, err)
	}
	return f, m, nil
}

// NewTemp creates a temporary file in the store's directory, for an
// archive being written (Adopt moves it into place).
func (s *Store) NewTemp() (*os.File, error) {
	f, err := os.CreateTemp(s.dir, "collect-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("results store: %w", err)
	}
	return f, nil
}

// Adopt moves the finished archive file name into the store as m. The
// caller has checked that its bytes hash to m.Digest.
func (s *Store) Adopt(name string, m Meta) error {
	if err := archive.CheckDigest(m.Digest); err != nil {
		return err
	}
	now := time.Now().UTC()
	if m.Stored.IsZero() {
		m.Stored = now
	}
	m.Used = now
	if err := os.Rename(name, s.path(m.Digest)); err != nil {
		return fmt.Errorf("results store: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	side := filepath.Join(s.dir, hexOf(m.Digest)+".json")
	if err := os.WriteFile(side+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("results store: %w", err)
	}
	if err := os.Rename(side+".tmp", side); err != nil {
		return fmt.Errorf("results store: %w", err)
	}
	s.mu.Lock()
	s.metas[m.Digest] = m
	s.mu.Unlock()
	return nil
}

// Remove drops a held archive (and any partial fetch of it).
func (s *Store) Remove(digest string) {
	s.mu.Lock()
	delete(s.metas, digest)
	s.mu.Unlock()
	_ = os.Remove(filepath.Join(s.dir, hexOf(digest)+".json"))
	_ = os.Remove(s.path(digest))
	_ = os.Remove(s.PartPath(digest))
}

// Evict removes archives unused for longer than the retention, then the
// least recently used ones until the total fits MaxBytes. It returns the
// digests removed.
func (s *Store) Evict(now time.Time) []string {
	ms := s.List()
	sort.Slice(ms, func(i, j int) bool { return ms[i].Used.Before(ms[j].Used) })
	var total int64
	for _, m := range ms {
		total += m.Size
	}
	var gone []string
	for _, m := range ms {
		expired := s.budget.Retention > 0 && now.Sub(m.Used) > s.budget.Retention
		over := s.budget.MaxBytes > 0 && total > s.budget.MaxBytes
		if !expired && !over {
			continue
		}
		s.Remove(m.Digest)
		total -= m.Size
		gone = append(gone, m.Digest)
		s.log.Info("results evicted", "digest", m.Digest, "size", m.Size, "expired", expired)
	}
	return gone
}

// hashFile returns the digest of a file's first n bytes.
func hashFile(name string, n int64) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := archive.NewHash()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", err
	}
	return archive.Digest(h), nil
}

// Collect stores the archive that write produces (a driver's
// CollectOutputs), naming it by the digest of its bytes; m gives the
// task and agreement. It returns m with digest and size filled in.
func (s *Store) Collect(write func(io.Writer) (int64, error), m Meta) (Meta, error) {
	f, err := s.NewTemp()
	if err != nil {
		return Meta{}, err
	}
	defer os.Remove(f.Name()) // gone after Adopt renames it
	h := archive.NewHash()
	n, err := write(io.MultiWriter(f, h))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Meta{}, err
	}
	m.Digest, m.Size = archive.Digest(h), n
	if _, held := s.Get(m.Digest); held {
		return m, nil // the same bytes from an earlier attempt
	}
	return m, s.Adopt(f.Name(), m)
}
