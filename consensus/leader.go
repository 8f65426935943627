package consensus

// Leader is the id of the leader this node knows of ("" when none).
func (l *Ledger) Leader() string { return l.leader() }
