package archive_test

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-mesh/pcm/drivers/archive"
)

// FuzzUnpack: whatever bytes an archive holds (an input named by digest
// may come from a hostile provider), Unpack writes nothing outside its
// destination and no links.
func FuzzUnpack(f *testing.F) {
	for _, hdr := range []tar.Header{
		{Name: "ok.txt", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644},
		{Name: "../up.txt", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644},
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h := hdr
		_ = tw.WriteHeader(&h)
		if h.Size > 0 {
			_, _ = tw.Write([]byte("hi"))
		}
		_ = tw.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "dst")
		_ = archive.Unpack(bytes.NewReader(data), dst, 1<<20)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != root && p != dst && !strings.HasPrefix(p, dst+string(os.PathSeparator)) {
				t.Fatalf("unpack wrote %s outside %s", p, dst)
			}
			if d.Type()&fs.ModeSymlink != 0 {
				t.Fatalf("unpack made a link %s", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
