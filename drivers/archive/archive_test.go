package archive_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-mesh/pcm/drivers/archive"
)

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	full := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCollectUnpackRoundTripIsDeterministic(t *testing.T) {
	src := t.TempDir()
	write(t, src, "out/a.txt", "alpha")
	write(t, src, "out/sub/b.txt", "beta")
	write(t, src, "small.txt", "s")
	write(t, src, "ignored.log", "not an output")
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "out", "link")); err != nil {
		t.Fatal(err)
	}
	var one, two bytes.Buffer
	n, err := archive.Collect(src, []string{"out", "*.txt", "missing/*"}, 0, &one)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(one.Len()) {
		t.Fatalf("Collect reported %d bytes, wrote %d", n, one.Len())
	}
	if _, err := archive.Collect(src, []string{"*.txt", "out"}, 0, &two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("the same files gave two different archives")
	}
	dst := t.TempDir()
	if err := archive.Unpack(bytes.NewReader(one.Bytes()), dst, 0); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"out/a.txt": "alpha", "out/sub/b.txt": "beta", "small.txt": "s"} {
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"ignored.log", "out/link"} {
		if _, err := os.Lstat(filepath.Join(dst, rel)); err == nil {
			t.Errorf("%s was archived", rel)
		}
	}
}

func TestCollectLimit(t *testing.T) {
	src := t.TempDir()
	write(t, src, "big", strings.Repeat("x", 100))
	_, err := archive.Collect(src, []string{"big"}, 99, &bytes.Buffer{})
	if !errors.Is(err, archive.ErrTooLarge) || !strings.Contains(err.Error(), "outputs.max_size") {
		t.Fatalf("err %v, want ErrTooLarge naming outputs.max_size", err)
	}
}

func TestBadPatternsAreRefused(t *testing.T) {
	for _, p := range []string{"", "/etc/passwd", "../x", "a/../../x", "[bad"} {
		if err := archive.CheckPattern(p); err == nil {
			t.Errorf("pattern %q accepted", p)
		}
	}
}

func TestUnpackRefusesEscapesAndLinks(t *testing.T) {
	for _, hdr := range []tar.Header{
		{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		{Name: "/abs", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc", Mode: 0o777},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h := hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			_, _ = tw.Write([]byte("x"))
		}
		_ = tw.Close()
		dst := filepath.Join(t.TempDir(), "dst")
		if err := archive.Unpack(&buf, dst, 0); err == nil {
			t.Errorf("entry %q (%c) unpacked", hdr.Name, hdr.Typeflag)
		}
	}
}

func TestCheckDigest(t *testing.T) {
	h := archive.NewHash()
	good := archive.Digest(h)
	if err := archive.CheckDigest(good); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "sha256:", "md5:" + good[7:], strings.ToUpper(good), good + "0"} {
		if archive.CheckDigest(d) == nil {
			t.Errorf("digest %q accepted", d)
		}
	}
}
