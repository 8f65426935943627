package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AdvertsTopic is the gossipsub topic of provider adverts.
const AdvertsTopic = "/pcm/adverts/1.0.0"

// AdvertVersion is the advert format version.
const AdvertVersion = 1

// MaxAdvertSize bounds an encoded advert.
const MaxAdvertSize = 64 << 10

// Advert is what a provider tells the mesh about itself. Amounts are keyed
// by resource class: "cpu" (cores), "memory" and "storage" (MiB), "gpu" and
// "gpu:<model>" (devices). See PROTOCOL.md.
type Advert struct {
	V          int                         `json:"v"`
	Provider   string                      `json:"provider"`
	Seq        uint64                      `json:"seq"`
	Time       time.Time                   `json:"time"`
	TTLSeconds float64                     `json:"ttl_s"`
	Addrs      []string                    `json:"addrs,omitempty"`
	Drivers    []DriverInfo                `json:"drivers"`
	Total      map[string]float64          `json:"total"`
	Free       map[string]float64          `json:"free"`
	Attrs      map[string]string           `json:"attrs,omitempty"`
	Frameworks []string                    `json:"frameworks,omitempty"`
	Prices     map[string]map[string]int64 `json:"prices,omitempty"`
	Running    int                         `json:"running"`
	Roles      []string                    `json:"roles,omitempty"`
	// Reachability is public, private or unknown (see NATStatus); other
	// agents behind NAT pick public ones as relays.
	Reachability string `json:"reachability,omitempty"`
}

// DriverInfo is one driver's share of an advert.
type DriverInfo struct {
	Name  string             `json:"name"`
	Kinds []string           `json:"kinds,omitempty"`
	Total map[string]float64 `json:"total,omitempty"`
	Free  map[string]float64 `json:"free,omitempty"`
	Attrs map[string]string  `json:"attrs,omitempty"`
}

// TTL is the advert's time to live.
func (a *Advert) TTL() time.Duration { return time.Duration(a.TTLSeconds * float64(time.Second)) }

// HasDriver reports whether the provider offers driver name.
func (a *Advert) HasDriver(name string) bool {
	for _, d := range a.Drivers {
		if d.Name == name {
			return true
		}
	}
	return false
}

// DecodeAdvert parses and checks an advert's form. It does not check the
// signer, the sequence number or the clock: the Validator does.
func DecodeAdvert(b []byte) (*Advert, error) {
	if len(b) > MaxAdvertSize {
		return nil, fmt.Errorf("%w: advert is %d bytes, limit %d", ErrTooLarge, len(b), MaxAdvertSize)
	}
	var a Advert
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("advert is not valid JSON: %w", err)
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Check validates the advert's fields.
func (a *Advert) Check() error {
	var errs []error
	if a.V != AdvertVersion {
		errs = append(errs, fmt.Errorf("v is %d; this agent reads version %d", a.V, AdvertVersion))
	}
	if _, err := peer.Decode(a.Provider); err != nil {
		errs = append(errs, fmt.Errorf("provider %q is not a peer id", a.Provider))
	}
	if a.Seq == 0 {
		errs = append(errs, errors.New("seq is missing"))
	}
	if a.Time.IsZero() {
		errs = append(errs, errors.New("time is missing"))
	}
	if a.TTLSeconds <= 0 || a.TTLSeconds > 3600 || math.IsNaN(a.TTLSeconds) {
		errs = append(errs, fmt.Errorf("ttl_s %v must be in (0, 3600]", a.TTLSeconds))
	}
	if len(a.Drivers) == 0 {
		errs = append(errs, errors.New("drivers is empty"))
	}
	for i, d := range a.Drivers {
		if d.Name == "" {
			errs = append(errs, fmt.Errorf("drivers[%d].name is missing", i))
		}
	}
	if a.Total == nil || a.Free == nil {
		errs = append(errs, errors.New("total and free are required"))
	}
	for k, v := range a.Total {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("total.%s %v must be a finite number >= 0", k, v))
		}
	}
	for k, v := range a.Free {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("free.%s %v must be a finite number >= 0", k, v))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("malformed advert: %w", errors.Join(errs...))
	}
	return nil
}
