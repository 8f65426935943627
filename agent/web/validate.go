package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/pcm-mesh/pcm/rules"
)

// maxDocument bounds a pasted or uploaded task document.
const maxDocument = 1 << 20

// Validation is the answer of /web/validate: the same verdict and field
// errors as `pcm-agent task validate`.
type Validation struct {
	Valid  bool               `json:"valid"`
	Name   string             `json:"name,omitempty"`
	Hash   string             `json:"hash,omitempty"`
	Errors []rules.FieldError `json:"errors,omitempty"`
	// Text is each error as the CLI prints it (line N: field: message).
	Text []string `json:"text,omitempty"`
}

// validate parses doc as a task document.
func validate(doc []byte) Validation {
	t, err := rules.ParseTask("", doc)
	if err == nil {
		return Validation{Valid: true, Name: t.Name, Hash: t.Hash()}
	}
	var v Validation
	var list *rules.ErrorList
	if errors.As(err, &list) {
		v.Errors = list.Errors
	} else {
		v.Errors = []rules.FieldError{{Msg: err.Error()}}
	}
	for _, fe := range v.Errors {
		v.Text = append(v.Text, fe.Error())
	}
	return v
}

func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, maxDocument+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read the document: %w", err))
		return
	}
	if len(doc) > maxDocument {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the document is over %d bytes", maxDocument))
		return
	}
	writeJSON(w, http.StatusOK, validate(doc))
}
