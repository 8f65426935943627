package agent

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/pcm-mesh/pcm/mesh"
)

// FuzzTaskRequest: task and submit stream requests of any bytes decode or
// are refused; never a panic.
func FuzzTaskRequest(f *testing.F) {
	var buf bytes.Buffer
	_ = mesh.WriteFrame(&buf, TaskRequest{V: 1, Op: "logs", TaskID: "t1", Follow: true}, maxFrame)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		var req TaskRequest
		_ = mesh.ReadFrame(bufio.NewReader(bytes.NewReader(data)), &req, maxFrame)
		var sub SubmitRequest
		_ = mesh.ReadFrame(bufio.NewReader(bytes.NewReader(data)), &sub, maxFrame)
	})
}
