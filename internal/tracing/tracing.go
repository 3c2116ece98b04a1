// Package tracing sends OpenTelemetry traces of the gRPC server to an OTLP collector, when one
// is configured through the standard OTEL_EXPORTER_OTLP_* environment variables.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// Enabled reports whether an OTLP endpoint is configured.
func Enabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs a tracer provider exporting over OTLP/gRPC (endpoint, headers and TLS from the
// OTEL_EXPORTER_OTLP_* variables) and W3C trace-context propagation. It returns the gRPC server
// option that traces every RPC, and a shutdown that flushes the spans still buffered.
func Setup(ctx context.Context, service string) (grpc.ServerOption, func(context.Context) error, error) {
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// Schemaless, so the merge never conflicts with the schema version resource.Default uses.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))), tp.Shutdown, nil
}

// HTTPHandler traces every request of the HTTP port with the tracer provider Setup installed: a
// span named by method and path ("POST /v1/Recommend"), from the caller's traceparent when it
// sends one. Calls on its gRPC paths also get the gRPC server's span, as a child.
func HTTPHandler(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "http", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	}))
}
