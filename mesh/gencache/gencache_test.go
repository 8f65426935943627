package gencache

import "testing"

func TestCacheStaysBoundedAndKeepsWhatIsUsed(t *testing.T) {
	c := New[int, int](100)
	c.Put(-1, -1)
	for i := range 10_000 {
		c.Put(i, i*2)
		if _, ok := c.Get(-1); !ok { // in steady use: never dropped
			t.Fatalf("after %d puts the entry in use is gone", i)
		}
		if n := c.Len(); n > 200 {
			t.Fatalf("after %d puts the cache holds %d entries, want at most 200", i, n)
		}
	}
	if v, ok := c.Get(9_999); !ok || v != 19_998 {
		t.Errorf("latest entry: %d, %v", v, ok)
	}
	if _, ok := c.Get(5); ok {
		t.Error("an entry from 10,000 puts ago is still held")
	}
	c.Clear()
	if _, ok := c.Get(9_999); ok || c.Len() != 0 {
		t.Error("Clear kept entries")
	}
}
