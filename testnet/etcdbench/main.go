// Command etcdbench puts values into an etcd cluster from concurrent
// writers, each put awaited, and prints entries/s and put latency as go
// test benchmark lines, so that testnet/bench.sh can set etcd's figures
// beside pcm's BenchmarkCommit (same shape: N entries, P writers, one
// entry in flight per writer).
//
// It lives in its own module so that the etcd client's dependencies stay
// out of pcm's go.mod.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type config struct {
	endpoints []string
	writers   []int
	n         int
	valueSize int
	timeout   time.Duration
}

func main() {
	var (
		endpoints = flag.String("endpoints", "127.0.0.1:2379", "comma-separated client URLs of the cluster")
		writers   = flag.String("writers", "1,16,128", "comma-separated numbers of concurrent writers, one run each")
		n         = flag.Int("n", 2000, "puts per run")
		valueSize = flag.Int("value-size", 733, "bytes per value (733: a signed pcm agreement entry as JSON)")
		timeout   = flag.Duration("timeout", 10*time.Second, "deadline of one put")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "etcdbench")
	cfg := config{endpoints: strings.Split(*endpoints, ","), n: *n, valueSize: *valueSize, timeout: *timeout}
	for _, w := range strings.Split(*writers, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || v < 1 {
			log.Error("bad -writers: want positive integers separated by commas", "value", w)
			os.Exit(2)
		}
		cfg.writers = append(cfg.writers, v)
	}
	if err := run(context.Background(), cfg); err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	leader, err := findLeader(ctx, cfg.endpoints)
	if err != nil {
		return err
	}
	// Puts go to the leader, as pcm's BenchmarkCommit proposes on its
	// leader: no forwarding hop on either side.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("connect to leader %s: %w", leader, err)
	}
	defer cli.Close()
	value := make([]byte, cfg.valueSize)
	if _, err := rand.Read(value); err != nil {
		return fmt.Errorf("random value: %w", err)
	}
	// Values as text, like pcm's JSON entries.
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range value {
		value[i] = alphabet[int(value[i])%len(alphabet)]
	}
	prefix := make([]byte, 4)
	if _, err := rand.Read(prefix); err != nil {
		return fmt.Errorf("random key prefix: %w", err)
	}
	for _, w := range cfg.writers {
		res, err := putAll(ctx, cli, fmt.Sprintf("bench/%x/%d/", prefix, w), string(value), cfg.n, w, cfg.timeout)
		if err != nil {
			return fmt.Errorf("%d writers: %w", w, err)
		}
		fmt.Printf("BenchmarkEtcdPut/proposers=%d \t%8d\t%12.0f ns/op\t%10.2f entries/s\t%8.3f p50-ms\t%8.3f p99-ms\n",
			w, cfg.n, float64(res.elapsed.Nanoseconds())/float64(cfg.n), res.rate(cfg.n), ms(res.p50), ms(res.p99))
	}
	return nil
}

// findLeader returns the endpoint of the cluster's leader.
func findLeader(ctx context.Context, endpoints []string) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return "", fmt.Errorf("connect to %v: %w", endpoints, err)
	}
	defer cli.Close()
	var errs []error
	for _, ep := range endpoints {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("status of %s: %w", ep, err))
			continue
		}
		if st.Leader != 0 && st.Header.MemberId == st.Leader {
			return ep, nil
		}
	}
	return "", fmt.Errorf("no endpoint of %v is the leader: %w", endpoints, errors.Join(errs...))
}

type result struct {
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r result) rate(n int) float64 { return float64(n) / r.elapsed.Seconds() }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// putAll writes n distinct keys from w writers, each put awaited before the
// writer's next one.
func putAll(ctx context.Context, cli *clientv3.Client, prefix, value string, n, w int, timeout time.Duration) (result, error) {
	lat := make([]time.Duration, n)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := time.Now()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				pctx, cancel := context.WithTimeout(ctx, timeout)
				_, err := cli.Put(pctx, prefix+strconv.Itoa(i), value)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("put %d: %w", i, err))
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	return result{elapsed: elapsed, p50: lat[n/2], p99: lat[n*99/100]}, nil
}
