package consensus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyDirOnCorruptFiles: copies of a stopped ledger with bytes
// flipped in each kind of file (the FSM's Badger tables and manifest, the
// raft log's segment and metadata)
// make offline verify end within 30 s with an error or a failed report,
// never a hang or a pass.
func TestVerifyDirOnCorruptFiles(t *testing.T) {
	c, _, _ := stoppedLedger(t, 40)
	src := c.nodes[0].dir
	if rep, err := VerifyDir(src, testVerifier{}, nil); err != nil || !rep.OK {
		t.Fatalf("intact copy: %+v %v", rep, err)
	}
	var files []string
	for _, sub := range []string{"fsm", LogDir} {
		ents, _ := os.ReadDir(filepath.Join(src, sub))
		for _, e := range ents {
			n := e.Name()
			if strings.HasSuffix(n, ".sst") || n == "MANIFEST" || strings.HasSuffix(n, ".wal") || n == "wal-meta.db" {
				files = append(files, filepath.Join(sub, n))
			}
		}
	}
	if len(files) < 4 {
		t.Fatalf("expected table, manifest, segment and log metadata files, found %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, f)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range corruptAt(f, data) {
				for i := at; i < at+16 && i < len(data); i++ {
					data[i] ^= 0xff
				}
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rep, err := VerifyDir(dir, testVerifier{}, nil)
			took := time.Since(start)
			if took > 30*time.Second {
				t.Fatalf("verify took %s", took)
			}
			if err == nil && rep.OK {
				t.Fatalf("verify passed on a corrupt %s", f)
			}
			t.Logf("%s: %v %s (%s)", f, err, rep.Reason, took.Round(time.Millisecond))
		})
	}
}

// corruptAt is where to flip bytes in a ledger file so that it matters: a
// log segment is preallocated (the logs are in its non-zero start), and
// bbolt keeps a checksummed metadata page twice (both are hit); elsewhere
// a third of the way in.
func corruptAt(name string, data []byte) []int {
	switch {
	case strings.HasSuffix(name, ".wal"):
		end := len(data)
		for end > 0 && data[end-1] == 0 {
			end--
		}
		return []int{end / 3}
	case strings.HasSuffix(name, "wal-meta.db"):
		page := os.Getpagesize()
		return []int{16, page + 16}
	}
	return []int{len(data) / 3}
}
