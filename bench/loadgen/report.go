package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// reportCmd reads result lines and prints the comparison as Markdown: one
// table of every cell, then the ratios authzd/OPA per token set and
// concurrency.
func reportCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("report: want one results file")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	rs, err := readResults(f)
	if err != nil {
		return err
	}
	writeReport(os.Stdout, rs)
	return nil
}

func readResults(r io.Reader) ([]Result, error) {
	var rs []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] != '{' {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("results line %q: %w", line, err)
		}
		rs = append(rs, res)
	}
	return rs, sc.Err()
}

type cellKey struct {
	set  string
	conc int
}

func writeReport(w io.Writer, rs []Result) {
	if slices.ContainsFunc(rs, func(r Result) bool { return len(r.RSSSamplesMiB) == 0 }) {
		writeTables(w, rs)
	}
	writeSoak(w, rs)
}

func writeTables(w io.Writer, rs []Result) {
	fmt.Fprintln(w, "| tokens | conc | server | decisions/s | p50 | p99 | CPU s / 1,000 | peak RSS | errors |")
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		if len(r.RSSSamplesMiB) > 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %s | %s | %.3f | %.0f MiB | %d |\n",
			r.Set, r.Concurrency, r.Label, r.PerSecond, fmtMicros(r.P50Micros), fmtMicros(r.P99Micros),
			r.CPUPer1000, r.PeakRSSMiB, r.Errors)
	}

	// Ratios per token set and concurrency, against the OPA row.
	byCell := map[cellKey]map[string]Result{}
	var keys []cellKey
	for _, r := range rs {
		if len(r.RSSSamplesMiB) > 0 {
			continue
		}
		k := cellKey{r.Set, r.Concurrency}
		if byCell[k] == nil {
			byCell[k] = map[string]Result{}
			keys = append(keys, k)
		}
		series := r.Series
		if series == "" {
			series = r.Kind
		}
		byCell[k][series] = r
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| tokens | conc | REST/OPA decisions/s | gRPC/OPA decisions/s | REST/OPA p99 | gRPC/OPA p99 | REST/OPA CPU per decision | gRPC/OPA CPU per decision |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, k := range keys {
		c := byCell[k]
		opa, ok := c["opa"]
		if !ok {
			continue
		}
		rest, grpc := c["rest"], c["grpc"]
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", k.set, k.conc,
			ratio(rest.PerSecond, opa.PerSecond), ratio(grpc.PerSecond, opa.PerSecond),
			ratio(rest.P99Micros, opa.P99Micros), ratio(grpc.P99Micros, opa.P99Micros),
			ratio(rest.CPUPer1000, opa.CPUPer1000), ratio(grpc.CPUPer1000, opa.CPUPer1000))
	}

	// authzd with result sharing off, when measured: every decision
	// evaluates the policy, as for the first person of each kind.
	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Series == "grpc-unshared" }) {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| tokens | conc | gRPC unshared/OPA decisions/s | gRPC unshared/OPA p99 | gRPC unshared/OPA CPU per decision |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
	for _, k := range keys {
		c := byCell[k]
		opa, ok := c["opa"]
		u, ok2 := c["grpc-unshared"]
		if !ok || !ok2 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", k.set, k.conc,
			ratio(u.PerSecond, opa.PerSecond), ratio(u.P99Micros, opa.P99Micros), ratio(u.CPUPer1000, opa.CPUPer1000))
	}
}

func writeSoak(w io.Writer, rs []Result) {
	for _, r := range rs {
		if len(r.RSSSamplesMiB) == 0 {
			continue
		}
		s := r.RSSSamplesMiB
		tail := s[len(s)/2:]
		fmt.Fprintf(w, "\nSoak, %s, %s tokens, %d connections: %d decisions in %.0f s (%.0f/s), %d errors.\n",
			r.Label, r.Set, r.Concurrency, r.Requests, r.Seconds, r.PerSecond, r.Errors)
		fmt.Fprintf(w, "RSS samples: first %.1f MiB, max %.1f MiB, last %.1f MiB; second half min %.1f MiB, max %.1f MiB; peak (VmHWM) %.1f MiB.\n",
			s[0], slices.Max(s), s[len(s)-1], slices.Min(tail), slices.Max(tail), r.PeakRSSMiB)
		fmt.Fprintf(w, "RSS by tenth of the run (MiB): %s\n", tenths(s))
	}
}

func tenths(s []float64) string {
	var parts []string
	for i := 1; i <= 10; i++ {
		j := min(len(s)-1, i*len(s)/10)
		parts = append(parts, fmt.Sprintf("%.1f", s[j]))
	}
	return strings.Join(parts, ", ")
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func fmtMicros(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}
