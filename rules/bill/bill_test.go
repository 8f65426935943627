package bill

import (
	"math"
	"strings"
	"testing"
)

func TestAmount(t *testing.T) {
	const price = 3_600_000 // micros an hour: 1,000 a second
	for _, tt := range []struct {
		name      string
		terms     Terms
		cpu, wall float64
		want      int64
	}{
		{"wall", Terms{Basis: BasisWall}, 1, 2.5, 2_500},
		{"granularity rounds up", Terms{Basis: BasisWall, GranularityS: 60}, 0, 61, 120_000},
		{"minimum", Terms{Basis: BasisWall, Minimum: 7_000}, 0, 1, 7_000},
		{"cpu per requested core", Terms{Basis: BasisCPU, Cores: 2}, 4, 10, 2_000},
		{"cpu capped at wall time", Terms{Basis: BasisCPU, Cores: 1}, 50, 10, 10_000},
		{"cpu without cores bills wall time", Terms{Basis: BasisCPU}, 50, 10, 10_000},
		{"negative usage is none", Terms{Basis: BasisWall, Minimum: 1}, -5, -5, 1},
		{"NaN usage is none", Terms{Basis: BasisCPU, Cores: 1}, math.NaN(), math.NaN(), 0},
		{"huge usage is capped", Terms{Basis: BasisWall}, 0, math.Inf(1), MaxAmount},
	} {
		if got := tt.terms.Amount(price, tt.cpu, tt.wall); got != tt.want {
			t.Errorf("%s: %d; want %d", tt.name, got, tt.want)
		}
	}
}

func TestCheckNamesTheField(t *testing.T) {
	for _, tt := range []struct {
		terms Terms
		field string
	}{
		{Terms{Basis: "gpu"}, "bill.basis"},
		{Terms{Basis: BasisWall, GranularityS: -1}, "bill.granularity_s"},
		{Terms{Basis: BasisWall, GranularityS: math.Inf(1)}, "bill.granularity_s"},
		{Terms{Basis: BasisWall, Minimum: -1}, "bill.minimum"},
		{Terms{Basis: BasisCPU, Cores: math.NaN()}, "bill.cores"},
	} {
		err := tt.terms.Check()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: %v; want an error naming %s", tt.terms, err, tt.field)
		}
	}
	if err := (&Terms{Basis: BasisCPU, GranularityS: 60, Minimum: 5, Cores: 0.5}).Check(); err != nil {
		t.Errorf("good terms: %v", err)
	}
}
