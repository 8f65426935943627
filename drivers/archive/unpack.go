package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Unpack extracts a tar archive from r into dir (created if missing). It
// refuses entries that would leave dir, links and devices, and stops
// with ErrTooLarge once the files' content passes limit bytes (<= 0:
// none). Existing files are replaced.
func Unpack(r io.Reader, dir string, limit int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	err := walk(r, limit, func(hdr *tar.Header, name string, content io.Reader) error {
		full := filepath.Join(dir, filepath.FromSlash(name))
		mode := os.FileMode(hdr.Mode).Perm() | 0o600
		if hdr.Typeflag == tar.TypeDir {
			return os.MkdirAll(full, mode|0o700)
		}
		return writeFile(full, mode, content)
	})
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	return nil
}

// Check reads a whole archive and reports the first entry Unpack would
// refuse, or ErrTooLarge past limit bytes of content (<= 0: none).
func Check(r io.Reader, limit int64) error {
	return walk(r, limit, func(*tar.Header, string, io.Reader) error { return nil })
}

// walk calls fn for every entry of a tar archive after checking it: a
// file or directory whose path stays inside the destination, the files'
// content within limit.
func walk(r io.Reader, limit int64, fn func(hdr *tar.Header, name string, content io.Reader) error) error {
	tr := tar.NewReader(r)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q leaves the destination; refusing the archive", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("entry %q is a %q (links and devices are refused); archives hold files and directories only", hdr.Name, hdr.Typeflag)
		}
		if total += hdr.Size; limit > 0 && total > limit {
			return fmt.Errorf("%w: %s passes %d bytes", ErrTooLarge, name, limit)
		}
		if err := fn(hdr, name, tr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

func writeFile(full string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	_ = os.Remove(full) // replace, never write through an existing link
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
