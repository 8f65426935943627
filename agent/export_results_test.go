package agent

// DropResults removes a held archive (tests: make the next fetch go to
// the mesh again).
func (a *Agent) DropResults(digest string) { a.res.store.Remove(digest) }
