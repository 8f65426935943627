package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrTooLarge: the files exceed the size limit.
var ErrTooLarge = errors.New("outputs exceed the size limit")

// CheckPattern reports whether p is a usable output pattern: a relative
// slash-separated path or glob (path.Match syntax) inside the work dir.
func CheckPattern(p string) error {
	switch {
	case p == "":
		return errors.New("output pattern is empty; name a file or glob inside the work dir, e.g. out/*.csv")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("output pattern %q is absolute; give a path relative to the work dir", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("output pattern %q leaves the work dir (..); give a path inside it", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("output pattern %q: %w", p, err)
	}
	return nil
}

// Collect writes the files under dir that match patterns (a directory
// matched includes everything below it) to w as one tar archive, and
// returns the number of archive bytes written. The content of the files
// may total at most limit bytes (ErrTooLarge beyond); limit <= 0 means
// none. Symlinks are skipped; a pattern that matches nothing is not an
// error (a failed task may have written only some of its outputs).
func Collect(dir string, patterns []string, limit int64, w io.Writer) (int64, error) {
	files, err := match(dir, patterns)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	var total int64
	for _, rel := range files {
		full := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(full)
		if err != nil {
			return cw.n, fmt.Errorf("output %s: %w", rel, err)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			total += fi.Size()
			if limit > 0 && total > limit {
				return cw.n, fmt.Errorf("%w: %s brings them to %d bytes, over %d; raise outputs.max_size or write less", ErrTooLarge, rel, total, limit)
			}
		default:
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return cw.n, fmt.Errorf("archive %s: %w", rel, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, full, hdr.Size); err != nil {
				return cw.n, fmt.Errorf("archive %s: %w", rel, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, fmt.Errorf("archive: %w", err)
	}
	return cw.n, nil
}

// copyFile copies exactly size bytes of a file (it may have grown since
// it was listed: the archive records the listed size).
func copyFile(w io.Writer, name string, size int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n < size {
		err = fmt.Errorf("file shrank from %d to %d bytes while archived", size, n)
	}
	return err
}

// match lists the relative paths under dir matched by patterns, and
// everything below matched directories, sorted and without duplicates.
func match(dir string, patterns []string) ([]string, error) {
	seen := map[string]bool{}
	for _, p := range patterns {
		if err := CheckPattern(p); err != nil {
			return nil, err
		}
		hits, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, fmt.Errorf("output pattern %q: %w", p, err)
		}
		for _, h := range hits {
			err := filepath.WalkDir(h, func(full string, de fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, err := filepath.Rel(dir, full)
				if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
					return nil
				}
				if de.Type()&fs.ModeSymlink != 0 {
					return nil // never follow a link out of the work dir
				}
				seen[filepath.ToSlash(rel)] = true
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("output pattern %q: %w", p, err)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
