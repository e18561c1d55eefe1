package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkStartSpan measures an internal-step span with tracing off (the
// default) and on with an in-memory exporter.
func BenchmarkStartSpan(b *testing.B) {
	ctx := context.Background()
	b.Run("off", func(b *testing.B) {
		Disable()
		b.ReportAllocs()
		for b.Loop() {
			c, span := StartSpan(ctx, "evaluate")
			SetDecisionID(c, "0b6c1e2a")
			span.End()
		}
	})
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer tp.Shutdown(ctx)
		Enable(tp)
		defer Disable()
		b.ReportAllocs()
		for b.Loop() {
			c, span := StartSpan(ctx, "evaluate")
			SetDecisionID(c, "0b6c1e2a")
			span.End()
		}
	})
}
