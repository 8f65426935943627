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
	tr := tar.NewReader(r)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: read archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unpack: entry %q leaves the destination; refusing the archive", hdr.Name)
		}
		full := filepath.Join(dir, filepath.FromSlash(name))
		mode := os.FileMode(hdr.Mode).Perm() | 0o600
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(full, mode|0o700); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
		case tar.TypeReg:
			total += hdr.Size
			if limit > 0 && total > limit {
				return fmt.Errorf("%w: unpacking %s passes %d bytes", ErrTooLarge, name, limit)
			}
			if err := writeFile(full, mode, tr); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
		default:
			return fmt.Errorf("unpack: entry %q is a %q (links and devices are refused); archives hold files and directories only", hdr.Name, hdr.Typeflag)
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
