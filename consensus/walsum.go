package consensus

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/hashicorp/raft"
)

// Every raft log in the write-ahead log carries a CRC-32C of its index,
// term, type, data and extensions, appended to its extensions when it is
// stored and checked and removed when it is read. raft-wal checks a
// checksum only over a segment's last batch, when it recovers a torn
// write; a flipped bit anywhere else would be read back as if it were
// data — and a leader sends what it reads to followers, which would then
// refuse an entry the others applied. (A codec of our own cannot carry it:
// raft-wal (v0.4.1, v0.4.2) records the built-in codec in every segment header and
// refuses to reopen a segment written with another.)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const logSumLen = 4

func logSum(l *raft.Log, ext []byte) uint32 {
	var hdr [17]byte
	binary.BigEndian.PutUint64(hdr[0:], l.Index)
	binary.BigEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	s := crc32.Update(0, castagnoli, hdr[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(l.Data)))
	s = crc32.Update(s, castagnoli, n[:])
	s = crc32.Update(s, castagnoli, l.Data)
	return crc32.Update(s, castagnoli, ext)
}

// sealLog is a copy of l whose extensions end with its checksum.
func sealLog(l *raft.Log) *raft.Log {
	c := *l
	c.Extensions = binary.BigEndian.AppendUint32(slices.Clip(l.Extensions), logSum(l, l.Extensions))
	return &c
}

// openLog checks and removes the checksum sealLog added.
func openLog(l *raft.Log) error {
	n := len(l.Extensions)
	if n < logSumLen {
		return fmt.Errorf("raft log %d carries no checksum: the log segment is corrupt", l.Index)
	}
	ext, sum := l.Extensions[:n-logSumLen], binary.BigEndian.Uint32(l.Extensions[n-logSumLen:])
	if len(ext) == 0 {
		ext = nil
	}
	if logSum(l, ext) != sum {
		return fmt.Errorf("raft log %d fails its checksum: the log segment is corrupt", l.Index)
	}
	l.Extensions = ext
	return nil
}

// StoreLogs stores logs, each sealed with its checksum.
func (w walStore) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = sealLog(l)
	}
	return w.WAL.StoreLogs(sealed)
}

// StoreLog stores one log, sealed with its checksum.
func (w walStore) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

// GetLog reads the log at index into out, checking its checksum.
func (w walStore) GetLog(index uint64, out *raft.Log) error {
	if err := w.WAL.GetLog(index, out); err != nil {
		return err
	}
	return openLog(out)
}
