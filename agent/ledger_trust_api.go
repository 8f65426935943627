package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcm-mesh/pcm/consensus"
)

// VerifyAnswer is GET /v1/ledger/verify: the local chain check and, with
// ?peers=1, the comparison with every other replica's chain.
type VerifyAnswer struct {
	consensus.VerifyReport
	Peers *consensus.ForkReport `json:"peers,omitempty"`
}

func (a *Agent) handleLedgerVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := a.ledger.Verify(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	ans := VerifyAnswer{VerifyReport: rep}
	if p := r.URL.Query().Get("peers"); p == "1" || p == "true" {
		fr, err := a.ledger.CheckPeers(r.Context())
		if err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		ans.Peers = &fr
		a.fork.Store(&fr)
	}
	writeJSON(w, http.StatusOK, ans)
}

// AdmitRequest is POST /v1/ledger/admit: this agent (a voter) admits a
// peer to the ledger as voter or nonvoter, or revokes it (client).
type AdmitRequest struct {
	Peer string         `json:"peer"`
	Role consensus.Role `json:"role"`
}

func (a *Agent) handleLedgerAdmit(w http.ResponseWriter, r *http.Request) {
	var req AdmitRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("admit request: want {\"peer\": \"<peer id>\", \"role\": \"voter|nonvoter|client\"}: %w", err))
		return
	}
	if _, err := peer.Decode(req.Peer); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("peer %q is not a peer id: %w", req.Peer, err))
		return
	}
	rec, err := a.ledger.Admit(r.Context(), req.Peer, req.Role)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}
