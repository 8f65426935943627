package mesh

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

// FuzzDecodeAdvert: any bytes from gossip decode to a valid advert or an
// error, never a panic; what decodes re-encodes and decodes the same.
func FuzzDecodeAdvert(f *testing.F) {
	id, _ := GenerateIdentity()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	f.Add(mustJSONf(testAdvertF(id.ID(), 1, now)))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"provider":"x","drivers":[{}],"capacity":{"cpu":-1}}`))
	v := NewValidator(time.Minute, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAdvert(data)
		if err != nil {
			return
		}
		b := mustJSONf(a)
		if _, err := DecodeAdvert(b); err != nil {
			t.Fatalf("re-encoded advert does not decode: %v\n%s", err, b)
		}
		_, _ = v.check(id.PeerID(), data)
	})
}

// FuzzReadFrame: stream frames of any bytes are read or refused within the
// limit, never a panic or an allocation beyond it.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, map[string]any{"v": 1, "op": "status"}, 1<<10)
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x05, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v map[string]any
		r := bufio.NewReader(bytes.NewReader(data))
		for range 4 {
			if err := ReadFrame(r, &v, 1<<10); err != nil {
				return
			}
		}
	})
}

func mustJSONf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
