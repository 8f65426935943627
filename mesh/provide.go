package mesh

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ProvidedKey is a DHT key this node provides, and how that went.
type ProvidedKey struct {
	Key string `json:"key"`
	// Provides counts successful provides (the first and every
	// re-provide); LastProvided is the latest one.
	Provides     int       `json:"provides"`
	LastProvided time.Time `json:"last_provided,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// Provide announces a key (e.g. "pcm:driver:local") on the DHT now and
// keeps re-providing it every ReprovideInterval until Unprovide. Without
// a DHT it only remembers the key.
func (n *Node) Provide(ctx context.Context, key string) error {
	if _, err := KeyCID(key); err != nil {
		return err
	}
	n.mu.Lock()
	pk := n.provided[key]
	if pk == nil {
		pk = &ProvidedKey{Key: key}
		n.provided[key] = pk
	}
	fresh := !pk.LastProvided.IsZero() && time.Since(pk.LastProvided) < n.cfg.ReprovideInterval
	n.mu.Unlock()
	if fresh {
		return nil // provided recently; the loop provides it again in time
	}
	return n.provideNow(ctx, key)
}

// provideNow provides one key and records the outcome.
func (n *Node) provideNow(ctx context.Context, key string) error {
	if n.dht == nil {
		return nil
	}
	c, _ := KeyCID(key)
	err := ErrNoDHTPeers
	if n.dht.RoutingTable().Size() > 0 {
		err = n.dht.Provide(ctx, c, true)
	}
	n.mu.Lock()
	if pk := n.provided[key]; pk != nil {
		if err != nil {
			pk.LastError = err.Error()
		} else {
			pk.Provides, pk.LastProvided, pk.LastError = pk.Provides+1, time.Now().UTC(), ""
		}
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("provide %s: %w", key, err)
	}
	return nil
}

// reprovideLoop provides every key again once its last provide is a
// ReprovideInterval old, so lookups keep finding a long-running node
// after its records expire; a key whose provide failed (no DHT peers yet)
// is tried again within 30 s. A failure is logged at warn once, until the
// key is provided again; a lone node (no DHT peers) logs nothing.
func (n *Node) reprovideLoop(ctx context.Context) {
	if n.dht == nil {
		return
	}
	t := time.NewTicker(min(n.cfg.ReprovideInterval, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, pk := range n.ProvidedKeys() {
			if time.Since(pk.LastProvided) < n.cfg.ReprovideInterval {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := n.provideNow(pctx, pk.Key)
			cancel()
			switch {
			case err == nil, ctx.Err() != nil, errors.Is(err, ErrNoDHTPeers):
			case pk.LastError == "": // the first failure after a success
				n.log.Warn("provide DHT key", "key", pk.Key, "err", err)
			default:
				n.log.Debug("provide DHT key", "key", pk.Key, "err", err)
			}
		}
	}
}

// Unprovide stops re-providing key (its DHT records expire by themselves).
func (n *Node) Unprovide(key string) {
	n.mu.Lock()
	delete(n.provided, key)
	n.mu.Unlock()
}

// Provided lists the keys this node provides, sorted.
func (n *Node) Provided() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.provided))
	for k := range n.provided {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ProvidedKeys reports every provided key with its provide counts.
func (n *Node) ProvidedKeys() []ProvidedKey {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ProvidedKey, 0, len(n.provided))
	for _, pk := range n.provided {
		out = append(out, *pk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// RoutingTableSize is the number of peers in the DHT routing table.
func (n *Node) RoutingTableSize() int {
	if n.dht == nil {
		return 0
	}
	return n.dht.RoutingTable().Size()
}

// FindProviders asks the DHT who provides key.
func (n *Node) FindProviders(ctx context.Context, key string, count int) ([]peer.AddrInfo, error) {
	if n.dht == nil {
		return nil, nil
	}
	c, err := KeyCID(key)
	if err != nil {
		return nil, err
	}
	var out []peer.AddrInfo
	for ai := range n.dht.FindProvidersAsync(ctx, c, count) {
		out = append(out, ai)
	}
	return out, nil
}
