package consensus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// storedConfig is the latest raft configuration the FSM applied.
type storedConfig struct {
	Index     uint64   `json:"index"`
	Voters    []string `json:"voters"`
	NonVoters []string `json:"non_voters"`
}

// RefusedRecord is a committed entry the FSM refused: it takes a raft slot
// but no chain index, and every replica records the same refusal under
// the same raft index, so replicas stay identical.
type RefusedRecord struct {
	RaftIndex uint64   `json:"raft_index"`
	Position  int      `json:"position"` // within the raft log's batch
	Type      string   `json:"type"`
	ID        string   `json:"id"`
	Signers   []string `json:"signers"`
	Code      string   `json:"code"`
	Reason    string   `json:"reason"`
}

func (w *writer) setConfig(c raft.Configuration) error {
	v, nv := serverIDs(c)
	b, err := json.Marshal(storedConfig{Voters: v, NonVoters: nv})
	if err != nil {
		return err
	}
	return w.set(keyConfig, b)
}

func readConfig(txn *badger.Txn) (storedConfig, bool, error) {
	var c storedConfig
	item, err := txn.Get(keyConfig)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	return c, true, item.Value(func(v []byte) error { return json.Unmarshal(v, &c) })
}

// recordRefused writes a refused entry under its raft index, so every
// replica keeps the same record of what it refused and why.
func (f *fsm) recordRefused(w *writer, raftIndex uint64, pos int, e *Entry, cause error) {
	f.refused.Add(RefusedApply)
	r := RefusedRecord{RaftIndex: raftIndex, Position: pos, Type: e.Type, ID: e.ID, Code: errorCode(cause), Reason: cause.Error()}
	for _, s := range e.Signatures {
		r.Signers = append(r.Signers, s.Signer)
	}
	b, err := json.Marshal(r)
	if err == nil {
		k := append(append([]byte{}, prefixRefused...), be64(raftIndex)...)
		k = binary.BigEndian.AppendUint32(k, uint32(pos))
		err = w.set(k, b)
	}
	if err != nil {
		panic(fmt.Sprintf("consensus: record refused entry at raft index %d: %v", raftIndex, err))
	}
	f.logger.Warn("ledger entry refused on apply", "type", e.Type, "id", e.ID, "raft_index", raftIndex, "err", cause)
}

// checkContent checks what the schema cannot: a framework entry must hold
// a valid framework (Config.CheckPayload).
func (f *fsm) checkContent(e *Entry) error {
	if f.checkPayload == nil || e.Type != TypeFramework {
		return nil
	}
	p, err := e.decode()
	if err != nil {
		return err
	}
	return f.checkContentOf(e, p)
}

func (f *fsm) checkContentOf(e *Entry, _ payload) error {
	if f.checkPayload == nil || e.Type != TypeFramework {
		return nil
	}
	if err := f.checkPayload(e.Type, e.Payload); err != nil {
		return fmt.Errorf("%s %q: content is not valid: %w: %w", e.Type, e.ID, ErrInvalid, err)
	}
	return nil
}

// checkAuthor enforces who may author what, beyond the signatures the
// type requires (those are checked by Validate): membership entries only
// by a voter of the configuration in force at that point of the log.
func (f *fsm) checkAuthor(w *writer, p payload) error {
	m, ok := p.(*MembershipNote)
	if !ok {
		return nil
	}
	c, known, err := readConfig(w.txn)
	if err != nil {
		return err
	}
	if !known || !slices.Contains(c.Voters, m.Author) {
		return fmt.Errorf("membership entries are written by the ledger's voters (the leader records changes, a voter admits peers); %s is not a voter: %w", shortID(m.Author), ErrUnauthorized)
	}
	return nil
}

// checkAuthorNow is checkAuthor against this replica's current state, at
// propose time, so a forged membership entry is refused before it takes a
// raft slot (apply checks again, deterministically). A client holds no
// state and leaves the check to the replica it forwards to.
func (f *fsm) checkAuthorNow(e *Entry) error {
	if e.Type != TypeMembership {
		return nil
	}
	p, err := e.decode()
	if err != nil {
		return err
	}
	return f.db.View(func(txn *badger.Txn) error {
		if _, known, err := readConfig(txn); err != nil || !known {
			return err
		}
		if err := f.checkAuthor(&writer{txn: txn}, p); err != nil {
			return fmt.Errorf("%s %q: %w", e.Type, e.ID, err)
		}
		return nil
	})
}

// applyAdmission keeps the allow-list that voters change with admit and
// revoke entries.
func (w *writer) applyAdmission(m *MembershipNote) error {
	k := append(append([]byte{}, prefixAdmitted...), m.Node...)
	switch m.Change {
	case ChangeAdmitVoter:
		return w.set(k, []byte(RoleVoter))
	case ChangeAdmitNonVoter:
		return w.set(k, []byte(RoleNonVoter))
	case ChangeRevoke:
		err := w.txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = w.txn.Commit(); err != nil {
				return err
			}
			w.txn = w.db.NewTransaction(true)
			err = w.txn.Delete(k)
		}
		return err
	}
	return nil
}

// admitted returns the role a voter admitted node to, if any.
func (f *fsm) admitted(node string) (Role, bool) {
	var r Role
	err := f.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte{}, prefixAdmitted...), node...))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { r = Role(v); return nil })
	})
	return r, err == nil && r != ""
}

// Admitted lists the peers voters admitted through the ledger, with their role.
func (l *Ledger) Admitted() map[string]Role {
	out := map[string]Role{}
	_ = l.fsmDB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAdmitted})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			node := string(it.Item().Key()[len(prefixAdmitted):])
			_ = it.Item().Value(func(v []byte) error { out[node] = Role(v); return nil })
		}
		return nil
	})
	return out
}

// RefusedEntries returns the committed entries this replica refused, the
// newest last (at most limit; 0 for all).
func (l *Ledger) RefusedEntries(limit int) []RefusedRecord {
	var out []RefusedRecord
	_ = l.fsmDB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRefused, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r RefusedRecord
			if it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }) == nil {
				out = append(out, r)
			}
		}
		return nil
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}
