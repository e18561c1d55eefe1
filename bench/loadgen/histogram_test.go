package main

import (
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 999_999, 1 << 40, 1<<62 + 12345} {
		i := bucketOf(v)
		if lo, hi := lowerBound(i), lowerBound(i+1); v < lo || v >= hi {
			t.Errorf("value %d: got bucket %d [%d, %d), want the value inside", v, i, lo, hi)
		}
	}
}

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "single", values: []time.Duration{time.Millisecond}, q: 0.99, want: time.Millisecond},
		{name: "median of a ramp", values: ramp(1000, time.Microsecond), q: 0.5, want: 500 * time.Microsecond},
		{name: "p99 of a ramp", values: ramp(1000, time.Microsecond), q: 0.99, want: 990 * time.Microsecond},
		{name: "p99 with a slow tail", values: append(ramp(980, 0), ramp(20, time.Second)...), q: 0.99,
			want: 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistogram()
			for _, v := range tc.values {
				h.record(v)
			}
			got := h.quantile(tc.q)
			// Buckets are 1/64 wide.
			if diff := float64(got-tc.want) / float64(tc.want); diff > 1.0/64 || diff < -1.0/64 {
				t.Errorf("got %v, want %v within 1/64", got, tc.want)
			}
		})
	}
}

// ramp returns n durations step, 2*step, ..., n*step; a zero step gives n
// durations of one nanosecond.
func ramp(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * step
		if step == 0 {
			out[i] = 1
		}
	}
	return out
}
