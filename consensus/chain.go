package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// GenesisHash is the prev_hash of the first record: 32 zero bytes, hex.
var GenesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// Record is an applied entry: its ledger index (1, 2, ... with no gaps), the
// time its payload states, and its link in the hash chain.
type Record struct {
	Index uint64    `json:"index"`
	Time  time.Time `json:"time,omitzero"`
	Entry
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	// Billed is what the ledger billed when this record, the final event
	// of a billed agreement's attempt, applied. It is derived, not part of
	// the hash: a reader that does not trust the replica it read from
	// recomputes it from the agreement's terms and the event's usage.
	Billed *Billed `json:"billed,omitempty"`
}

// Billed is a settlement the ledger derived: Amount micros from Payer (the
// agreement's broker) to Payee (its provider).
type Billed struct {
	Payer  string `json:"payer"`
	Payee  string `json:"payee"`
	Amount int64  `json:"amount"`
}

// Receipt is what a successful proposal returns. Duplicate is true when the
// id had already been applied with the same payload; Index and Hash then name
// the original record.
type Receipt struct {
	Index     uint64 `json:"index"`
	Hash      string `json:"hash"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// ChainHash computes a record's hash:
//
//	sha256( prev_hash (32 raw bytes) || index (8 bytes big endian) ||
//	        lp(type) || lp(payload) || uint32(len(signatures)) ||
//	        for each signature in order: lp(signer) || lp(sig) )
//
// where lp(x) is x's length as 4 bytes big endian followed by x. prevHash is
// hex; a malformed prevHash hashes as its raw text so the mismatch shows.
func ChainHash(prevHash string, index uint64, e *Entry) string {
	h := sha256.New()
	prev, err := hex.DecodeString(prevHash)
	if err != nil || len(prev) != sha256.Size {
		prev = []byte(prevHash)
	}
	var n [8]byte
	h.Write(prev)
	binary.BigEndian.PutUint64(n[:], index)
	h.Write(n[:])
	lp := func(b []byte) {
		binary.BigEndian.PutUint32(n[:4], uint32(len(b)))
		h.Write(n[:4])
		h.Write(b)
	}
	lp([]byte(e.Type))
	lp(e.Payload)
	binary.BigEndian.PutUint32(n[:4], uint32(len(e.Signatures)))
	h.Write(n[:4])
	for _, s := range e.Signatures {
		lp([]byte(s.Signer))
		lp(s.Sig)
	}
	return hex.EncodeToString(h.Sum(nil))
}
