package mesh

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestIdentityPersistsAndRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode = %04o, want 0600", st.Mode().Perm())
	}
	b, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Fatalf("peer id changed across loads: %s != %s", a.ID(), b.ID())
	}

	path := filepath.Join(dir, KeyFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(dir); !errors.Is(err, ErrKeyMode) {
		t.Fatalf("open world-readable key: err = %v, want ErrKeyMode", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateIdentity(dir)
	if !errors.Is(err, ErrKeyCorrupt) {
		t.Fatalf("corrupt key: err = %v, want ErrKeyCorrupt", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "garbage" {
		t.Fatal("corrupt key file was replaced")
	}
}

func TestSignVerifyDomains(t *testing.T) {
	a, _ := GenerateIdentity()
	b, _ := GenerateIdentity()
	sig, err := a.Sign("bid/v1", []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	var v Verifier
	for range 2 { // the second check is answered by the cache
		if err := v.Verify(a.ID(), "bid/v1", []byte("payload"), sig); err != nil {
			t.Fatalf("valid signature: %v", err)
		}
	}
	bad := append([]byte{}, sig...)
	bad[0] ^= 1
	// Each check below differs from the cached success in one part only.
	for name, check := range map[string]error{
		"other signature": v.Verify(a.ID(), "bid/v1", []byte("payload"), bad),
		"other domain":    v.Verify(a.ID(), "award/v1", []byte("payload"), sig),
		"other payload":   v.Verify(a.ID(), "bid/v1", []byte("payloaD"), sig),
		"other author":    v.Verify(b.ID(), "bid/v1", []byte("payload"), sig),
		"not a peer id":   v.Verify("bob", "bid/v1", []byte("payload"), sig),
	} {
		if !errors.Is(check, ErrBadSignature) {
			t.Errorf("%s: err = %v, want ErrBadSignature", name, check)
		}
	}
}
