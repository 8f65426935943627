package consensus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyDirOnCorruptFiles: copies of a stopped ledger with bytes
// flipped in each kind of Badger file (FSM and raft: tables, manifest)
// make offline verify end within 30 s with an error or a failed report,
// never a hang or a pass.
func TestVerifyDirOnCorruptFiles(t *testing.T) {
	c := newTestCluster(t, 1, true, nil)
	l := c.start(0, true)
	c.leader(10 * time.Second)
	b, p := newSigner(t), newSigner(t)
	for i := range 40 {
		if _, err := l.Propose(t.Context(), agreementEntry(t, b, p, "t"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1)); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(0)
	src := c.nodes[0].dir
	if rep, err := VerifyDir(src, testVerifier{}, nil); err != nil || !rep.OK {
		t.Fatalf("intact copy: %+v %v", rep, err)
	}
	var files []string
	for _, sub := range []string{"fsm", "raft"} {
		ents, _ := os.ReadDir(filepath.Join(src, sub))
		for _, e := range ents {
			n := e.Name()
			if strings.HasSuffix(n, ".sst") || n == "MANIFEST" {
				files = append(files, filepath.Join(sub, n))
			}
		}
	}
	if len(files) < 3 {
		t.Fatalf("expected table and manifest files, found %v", files)
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
			for i := len(data) / 3; i < len(data)/3+16 && i < len(data); i++ {
				data[i] ^= 0xff
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
