package provider

import (
	"fmt"
	"testing"
)

func TestParseCacheSharesParsedTasks(t *testing.T) {
	var c parseCache
	doc := []byte("name: a\nresources: {cpu: 1}\ndriver: sim\ncommand: [x]\n")
	t1, err := c.parse("one", doc)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := c.parse("two", append([]byte{}, doc...))
	if err != nil || t2 != t1 {
		t.Fatalf("same document parsed again: %p %p %v", t1, t2, err)
	}
	other, err := c.parse("three", []byte("name: b\nresources: {cpu: 2}\ndriver: sim\ncommand: [x]\n"))
	if err != nil || other == t1 || other.Resources["cpu"] != 2 {
		t.Fatalf("another document: %+v, %v", other, err)
	}
	if _, err := c.parse("bad", []byte("name: c\nresources: {cpu: -1}\n")); err == nil {
		t.Fatal("an invalid document parsed")
	}
	for i := range 2*parsedGen + 1 {
		if _, err := c.parse("n", fmt.Appendf(nil, "name: t%d\nresources: {cpu: 1}\ndriver: sim\ncommand: [x]\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.cur) + len(c.old); n > 2*parsedGen {
		t.Fatalf("cache holds %d tasks, want at most %d", n, 2*parsedGen)
	}
}
