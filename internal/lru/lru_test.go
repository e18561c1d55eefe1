package lru

import (
	"fmt"
	"sync"
	"testing"
)

func TestCache(t *testing.T) {
	tests := []struct {
		name string
		size int
		ops  func(c *Cache[string, int])
		want map[string]int // what Get finds afterwards; absent keys are -1
	}{
		{
			name: "keeps up to its size",
			size: 2,
			ops:  func(c *Cache[string, int]) { c.Add("a", 1); c.Add("b", 2) },
			want: map[string]int{"a": 1, "b": 2},
		},
		{
			name: "evicts the least recently added",
			size: 2,
			ops:  func(c *Cache[string, int]) { c.Add("a", 1); c.Add("b", 2); c.Add("c", 3) },
			want: map[string]int{"a": -1, "b": 2, "c": 3},
		},
		{
			name: "a hit makes an entry recent",
			size: 2,
			ops: func(c *Cache[string, int]) {
				c.Add("a", 1)
				c.Add("b", 2)
				c.Get("a")
				c.Add("c", 3)
			},
			want: map[string]int{"a": 1, "b": -1, "c": 3},
		},
		{
			name: "adding an existing key replaces its value",
			size: 2,
			ops:  func(c *Cache[string, int]) { c.Add("a", 1); c.Add("a", 5); c.Add("b", 2) },
			want: map[string]int{"a": 5, "b": 2},
		},
		{
			name: "remove forgets",
			size: 2,
			ops:  func(c *Cache[string, int]) { c.Add("a", 1); c.Remove("a"); c.Remove("zz") },
			want: map[string]int{"a": -1},
		},
		{
			name: "size below one holds one",
			size: 0,
			ops:  func(c *Cache[string, int]) { c.Add("a", 1); c.Add("b", 2) },
			want: map[string]int{"a": -1, "b": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New[string, int](tt.size)
			tt.ops(c)
			for k, want := range tt.want {
				got, ok := c.Get(k)
				if !ok {
					got = -1
				}
				if got != want {
					t.Errorf("Get(%q): got %d, want %d", k, got, want)
				}
			}
		})
	}
}

func TestCacheBoundedUnderConcurrency(t *testing.T) {
	const size = 64
	c := New[string, int](size)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint(w, "-", i%300)
				if v, ok := c.Get(k); ok && v != i%300 {
					t.Errorf("Get(%q): got %d, want %d", k, v, i%300)
				}
				c.Add(k, i%300)
			}
		})
	}
	wg.Wait()
	if got := c.Len(); got != size {
		t.Errorf("Len: got %d, want %d", got, size)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := New[[32]byte, int](1000)
	var k [32]byte
	k[0] = 7
	c.Add(k, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(k); !ok {
			b.Fatal("miss")
		}
	}
}
