package consensus

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/rules/bill"
)

// PayloadVersion is the "v" every payload carries.
const PayloadVersion = 1

// BilledAgreementVersion is the "v" of an agreement that carries billing
// terms: the ledger bills its attempt when the attempt ends, and no
// settlement entry follows. Replicas of earlier versions refuse it (their
// chain then stops matching and they report a fork) rather than apply it
// without the bill; a leader accepts one only while every replica says it
// reads it (ReplicaStatus.Reads).
const BilledAgreementVersion = 2

// Task event kinds.
const (
	EventStarted   = "started"
	EventSucceeded = "succeeded"
	EventFailed    = "failed"
	EventCancelled = "cancelled"
	EventLost      = "lost"
)

// FrameworkPublished records a rule framework document; signed by Author.
type FrameworkPublished struct {
	V        int             `json:"v"`
	ID       string          `json:"id"`
	Author   string          `json:"author"`
	Document json.RawMessage `json:"document"`
	Time     time.Time       `json:"time"`
}

// Agreement binds a broker and a provider to run one attempt of a task;
// signed by both. For one task, the highest attempt wins (fencing).
type Agreement struct {
	V         int    `json:"v"`
	ID        string `json:"id"`
	TaskID    string `json:"task_id"`
	TaskHash  string `json:"task_hash"`
	Framework string `json:"framework"`
	Broker    string `json:"broker"`
	Provider  string `json:"provider"`
	// Submitter is the peer the task was submitted by (the broker itself
	// for its local API); with broker and provider, it may cancel the task
	// and read its logs and results.
	Submitter string `json:"submitter,omitempty"`
	Attempt   int    `json:"attempt"`
	// LeaseSeconds is the provider's lease on the attempt: it renews it
	// with the broker and stops the attempt when it cannot (default 30).
	LeaseSeconds int                `json:"lease_s,omitempty"`
	Price        int64              `json:"price"` // micros per hour
	Resources    map[string]float64 `json:"resources,omitempty"`
	Driver       string             `json:"driver"`
	// Bill are the billing terms of a billed agreement ("v": 2): when
	// the attempt ends succeeded, failed or cancelled, every replica bills
	// Bill.Amount(Price, the event's usage) from broker to provider.
	Bill *bill.Terms `json:"bill,omitempty"`
	Time time.Time   `json:"time"`
}

// Usage is what a task consumed.
type Usage struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
}

// TaskEvent records a task transition under an agreement. started, succeeded
// and failed are signed by the agreement's provider, lost by its broker,
// cancelled by either.
type TaskEvent struct {
	V           int    `json:"v"`
	ID          string `json:"id"`
	TaskID      string `json:"task_id"`
	AgreementID string `json:"agreement_id"`
	Event       string `json:"event"`
	Author      string `json:"author"`
	ExitCode    int    `json:"exit_code"`
	Usage       Usage  `json:"usage"`
	Message     string `json:"message,omitempty"`
	// Results names the archive of the attempt's outputs (succeeded and
	// failed events of tasks that declared outputs).
	Results *ResultsRef `json:"results,omitempty"`
	Time    time.Time   `json:"time"`
}

// ResultsRef binds a results archive to a task event: its digest
// ("sha256:" + 64 hex digits of the archive bytes) and size in bytes.
type ResultsRef struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// check validates a results reference.
func (r *ResultsRef) check() error {
	if r == nil {
		return nil
	}
	hexPart, ok := strings.CutPrefix(r.Digest, "sha256:")
	if _, err := hex.DecodeString(hexPart); !ok || err != nil || len(hexPart) != 64 || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("results.digest %q is not sha256:<64 lower-case hex digits>", r.Digest)
	}
	return need(r.Size > 0, "results.size must be > 0 bytes")
}

// Settlement moves Amount micros from Payer (the agreement's broker) to Payee
// (its provider); signed by the payer.
type Settlement struct {
	V           int       `json:"v"`
	ID          string    `json:"id"`
	TaskID      string    `json:"task_id"`
	AgreementID string    `json:"agreement_id"`
	Payer       string    `json:"payer"`
	Payee       string    `json:"payee"`
	Amount      int64     `json:"amount"`
	Time        time.Time `json:"time"`
}

// MembershipNote records a ledger membership change (voter added, promoted,
// removed); signed by Author, the leader that made the change.
type MembershipNote struct {
	V      int       `json:"v"`
	ID     string    `json:"id"`
	Node   string    `json:"node"`
	Change string    `json:"change"`
	Author string    `json:"author"`
	Time   time.Time `json:"time"`
}

// payload is implemented by every typed payload.
type payload interface {
	version() int
	entryID() string
	signers() []string
	check() error
	when() time.Time
}

func (p *FrameworkPublished) version() int      { return p.V }
func (p *FrameworkPublished) entryID() string   { return p.ID }
func (p *FrameworkPublished) signers() []string { return []string{p.Author} }
func (p *FrameworkPublished) when() time.Time   { return p.Time }
func (p *FrameworkPublished) check() error {
	return firstErr(
		need(p.Author != "", "author is empty; set it to the publisher's peer id"),
		need(len(p.Document) > 0, "document is empty"),
	)
}

// version maps a billed agreement's "v": 2 to the version decodePayload
// expects; check ties the version to the presence of billing terms.
func (p *Agreement) version() int {
	if p.V == BilledAgreementVersion {
		return PayloadVersion
	}
	return p.V
}
func (p *Agreement) entryID() string   { return p.ID }
func (p *Agreement) signers() []string { return sortedUnique(p.Broker, p.Provider) }
func (p *Agreement) when() time.Time   { return p.Time }
func (p *Agreement) check() error {
	return firstErr(
		need(p.TaskID != "", "task_id is empty"),
		need(p.Broker != "", "broker is empty"),
		need(p.Provider != "", "provider is empty"),
		need(p.Attempt >= 1, "attempt must be >= 1"),
		need(p.Price >= 0, "price must be >= 0 micros per hour"),
		need(p.V != BilledAgreementVersion || p.Bill != nil, `bill is missing; an agreement of "v": 2 carries billing terms`),
		need(p.V == BilledAgreementVersion || p.Bill == nil, `bill is set on an agreement of "v": 1; billing terms need "v": 2`),
		p.checkBill(),
	)
}

func (p *Agreement) checkBill() error {
	if p.Bill == nil {
		return nil
	}
	return p.Bill.Check()
}

// Billed says whether the ledger bills this agreement's attempt itself.
func (p *Agreement) Billed() bool { return p.V == BilledAgreementVersion && p.Bill != nil }

func (p *TaskEvent) version() int      { return p.V }
func (p *TaskEvent) entryID() string   { return p.ID }
func (p *TaskEvent) signers() []string { return []string{p.Author} }
func (p *TaskEvent) when() time.Time   { return p.Time }
func (p *TaskEvent) check() error {
	known := map[string]bool{EventStarted: true, EventSucceeded: true, EventFailed: true, EventCancelled: true, EventLost: true}
	return firstErr(
		need(p.TaskID != "", "task_id is empty"),
		need(p.AgreementID != "", "agreement_id is empty"),
		need(p.Author != "", "author is empty"),
		need(known[p.Event], fmt.Sprintf("event %q is unknown; known: started, succeeded, failed, cancelled, lost", p.Event)),
		need(p.Results == nil || p.Event == EventSucceeded || p.Event == EventFailed, "results are carried only by succeeded and failed events"),
		p.Results.check(),
	)
}

func (p *Settlement) version() int      { return p.V }
func (p *Settlement) entryID() string   { return p.ID }
func (p *Settlement) signers() []string { return []string{p.Payer} }
func (p *Settlement) when() time.Time   { return p.Time }
func (p *Settlement) check() error {
	return firstErr(
		need(p.AgreementID != "", "agreement_id is empty"),
		need(p.Payer != "", "payer is empty"),
		need(p.Payee != "", "payee is empty"),
		// A zero amount (an unpriced framework) and a broker that placed
		// the task on itself still settle, so every finished attempt has
		// exactly one settlement; both leave balances unchanged.
		need(p.Amount >= 0, "amount must be >= 0 micros"),
	)
}

func (p *MembershipNote) version() int      { return p.V }
func (p *MembershipNote) entryID() string   { return p.ID }
func (p *MembershipNote) signers() []string { return []string{p.Author} }
func (p *MembershipNote) when() time.Time   { return p.Time }
func (p *MembershipNote) check() error {
	return firstErr(
		need(p.Node != "", "node is empty"),
		need(p.Change != "", "change is empty"),
		need(p.Author != "", "author is empty"),
	)
}

// decodePayload decodes and checks a payload of type typ.
func decodePayload(typ string, raw []byte) (payload, error) {
	var p payload
	switch typ {
	case TypeFramework:
		p = &FrameworkPublished{}
	case TypeAgreement:
		p = &Agreement{}
	case TypeTaskEvent:
		p = &TaskEvent{}
	case TypeSettlement:
		p = &Settlement{}
	case TypeMembership:
		p = &MembershipNote{}
	default:
		return nil, fmt.Errorf("entry type %q: %w", typ, ErrUnknownType)
	}
	if err := json.Unmarshal(raw, p); err != nil {
		return nil, fmt.Errorf("payload does not decode as %s JSON: %w: %w", typ, ErrInvalid, err)
	}
	if p.version() != PayloadVersion {
		return nil, fmt.Errorf("payload version \"v\" is %d; this ledger reads version %d: %w", p.version(), PayloadVersion, ErrInvalid)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("payload: %w: %w", ErrInvalid, err)
	}
	return p, nil
}

func need(ok bool, msg string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s", msg)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedUnique(a, b string) []string {
	switch {
	case a == b:
		return []string{a}
	case a < b:
		return []string{a, b}
	}
	return []string{b, a}
}
