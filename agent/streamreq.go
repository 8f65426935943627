package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pcm-mesh/pcm/mesh"
)

// protocolVersionTask is the "v" of /pcm/task/1.0.0 and /pcm/submit/1.0.0
// messages.
const protocolVersionTask = 1

// errFraming: the frame itself could not be read (oversized, cut short);
// the stream is reset, as for any frame error.
var errFraming = errors.New("bad frame")

// readStreamRequest reads one request frame into v (a *TaskRequest or
// *SubmitRequest). A frame that cannot be read wraps errFraming; a frame
// that is not a valid request (not JSON, a field of the wrong type, a
// document that is not base64, a "v" other than 1) is an error to answer
// with {"ok": false, "error": ...}.
func readStreamRequest(r *bufio.Reader, v any) error {
	raw, err := mesh.ReadRawFrame(r, maxFrame)
	if err != nil {
		return fmt.Errorf("%w: %w", errFraming, err)
	}
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("request is not a JSON object: %w", err)
	}
	if head.V == nil || *head.V != protocolVersionTask {
		got := "missing"
		if head.V != nil {
			got = fmt.Sprint(*head.V)
		}
		return fmt.Errorf("request v is %s; this agent speaks v %d", got, protocolVersionTask)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("request field %q: want a JSON %s", te.Field, te.Type)
		case strings.Contains(err.Error(), "base64"):
			return fmt.Errorf("request field \"document\": not valid standard base64 (RFC 4648 with padding): %w", err)
		}
		return fmt.Errorf("request: %w", err)
	}
	return nil
}
