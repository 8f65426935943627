package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// DigestPrefix starts every digest.
const DigestPrefix = "sha256:"

// NewHash returns the hash a digest is taken with.
func NewHash() hash.Hash { return sha256.New() }

// Digest formats a finished hash as a digest.
func Digest(h hash.Hash) string { return DigestPrefix + hex.EncodeToString(h.Sum(nil)) }

// CheckDigest reports whether d is a well-formed digest; the error names
// the expected form.
func CheckDigest(d string) error {
	hexPart, ok := strings.CutPrefix(d, DigestPrefix)
	if !ok || len(hexPart) != 2*sha256.Size {
		return fmt.Errorf("digest %q is not sha256:<64 hex digits>", clip(d))
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("digest %q is not sha256:<64 lower-case hex digits>", clip(d))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
