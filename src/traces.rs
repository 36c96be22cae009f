//! OpenTelemetry traces: exported over OTLP/gRPC when an endpoint is configured, with W3C trace
//! context taken from requests and passed on to the calls toolstream makes.
//!
//! Configuration is the SDK's own, from the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (setting either turns traces on; with neither, nothing is
//! exported and requests cost nothing more), `OTEL_SERVICE_NAME` (default `toolstream`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`. `OTEL_SDK_DISABLED=true`
//! or `OTEL_TRACES_EXPORTER=none` keep them off.
//!
//! Spans come from `tracing`: the OpenTelemetry layer sees only toolstream's own spans (the
//! `toolstream` target, never h2, hyper or tonic, whose spans would include the exporter's own
//! requests). [`TraceContextLayer`] opens a `request` span per request whose parent is the
//! caller's `traceparent`; a run started by the request gets its `run` span inside it, so runs
//! join the caller's trace whatever carried them (gRPC, gRPC-Web, HTTP, SSE, a WebSocket's
//! upgrade). Remote tool calls and model calls inject the current context ([`inject_metadata`],
//! [`inject_headers`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;

/// Whether traces are exported: requests are only given spans, and outgoing calls only carry
/// context, when they are.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The propagator of W3C trace context (`traceparent`, `tracestate`).
static PROPAGATOR: std::sync::LazyLock<TraceContextPropagator> =
    std::sync::LazyLock::new(TraceContextPropagator::new);

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter: {0}")]
pub struct TracesError(String);

/// The trace pipeline: the tracer provider whose exporter sends spans to the collector.
pub struct Traces {
    provider: SdkTracerProvider,
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl Traces {
    /// The pipeline the `OTEL_*` variables describe, or `None` when they name no endpoint (or
    /// turn the SDK or the trace exporter off). Call it inside the Tokio runtime: spans are
    /// exported from a task on it.
    pub fn from_env() -> Result<Option<Traces>, TracesError> {
        let disabled = variable("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || variable("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| variable("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if disabled || endpoint.is_none() {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TracesError(e.to_string()))?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let mut resource = opentelemetry_sdk::Resource::builder();
        if variable("OTEL_SERVICE_NAME").is_none()
            && !variable("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="))
        {
            resource = resource.with_service_name("toolstream");
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        ENABLED.store(true, Ordering::Release);
        Ok(Some(Traces { provider }))
    }

    /// The `tracing` layer that turns toolstream's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber
            + for<'span> tracing_subscriber::registry::LookupSpan<'span>
            + Send
            + Sync,
    {
        use tracing_subscriber::Layer as _;
        let tracer = self.provider.tracer("toolstream");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("toolstream", tracing::Level::INFO))
    }

    /// Exports the spans still buffered and stops the exporter, within `bound`: shutdown ends
    /// even when the collector is gone (spans not sent by then are lost, and said so).
    pub async fn shutdown(self, bound: Duration) {
        ENABLED.store(false, Ordering::Release);
        let provider = self.provider;
        // The SDK's shutdown blocks its thread until the export task answers.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        match tokio::time::timeout(bound + Duration::from_millis(500), flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "traces not all exported at shutdown"),
            Ok(Err(error)) => tracing::warn!(%error, "trace exporter shutdown failed"),
            Err(_) => tracing::warn!(
                bound_secs = bound.as_secs_f64(),
                "trace exporter did not shut down in time; spans left unsent"
            ),
        }
    }
}

/// Whether traces are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Records a run's outcome (`code`, a gRPC code name) on its span as the exported attribute
/// `grpc.code` (the engine's span says only `run.status`); failures other than a cancellation
/// mark the span as an error.
pub fn record_outcome(span: &tracing::Span, code: &'static str) {
    span.set_attribute("grpc.code", code);
    if !matches!(code, "OK" | "Canceled") {
        span.set_status(opentelemetry::trace::Status::error(code));
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Adds the current span's trace context (`traceparent`) to outgoing HTTP headers.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    PROPAGATOR.inject_context(&context, &mut HeaderInjector(headers));
}

/// Adds the current span's trace context (`traceparent`) to an outgoing gRPC request's metadata.
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let mut headers = http::HeaderMap::new();
    inject_headers(&mut headers);
    for (name, value) in &headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
            value.to_str().map(tonic::metadata::MetadataValue::try_from),
        ) && let Ok(value) = value
        {
            metadata.insert(key, value);
        }
    }
}

/// W3C trace context carried outside headers (an MCP request's `_meta`).
struct PairExtractor<'a>(&'a [(&'a str, &'a str)]);

impl Extractor for PairExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| *value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| *name).collect()
    }
}

/// A `request` span for a call named `name` (such as `tools/call`) whose parent is the trace
/// context in `traceparent` and `tracestate` when they are valid: for requests that carry the
/// caller's context in their body rather than in headers (MCP's `_meta.traceparent`). Runs
/// started inside it join the caller's trace. A disabled span while traces are off.
pub fn span_with_remote_parent(
    name: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: "toolstream",
        "request",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "mcp",
    );
    let mut pairs = Vec::with_capacity(2);
    if let Some(traceparent) = traceparent {
        pairs.push(("traceparent", traceparent));
    }
    if let Some(tracestate) = tracestate {
        pairs.push(("tracestate", tracestate));
    }
    let parent = PROPAGATOR.extract(&PairExtractor(&pairs));
    if opentelemetry::trace::TraceContextExt::span(&parent)
        .span_context()
        .is_valid()
    {
        let _ = span.set_parent(parent);
    }
    span
}

/// Gives every request a `request` span, a child of the caller's span when the request carries a
/// W3C `traceparent` header (gRPC metadata are headers too). Passes requests through untouched
/// while traces are off.
#[derive(Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContext { inner }
    }
}

/// See [`TraceContextLayer`].
#[derive(Clone)]
pub struct TraceContext<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for TraceContext<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !enabled() {
            return Either::Left(self.inner.call(request));
        }
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        let path = request.uri().path();
        // gRPC spans are named by method (a bounded set); HTTP ones by verb, as HTTP conventions
        // ask when the route is not known here.
        let name = if grpc {
            path.trim_start_matches('/').to_owned()
        } else {
            request.method().as_str().to_owned()
        };
        let span = tracing::info_span!(
            target: "toolstream",
            "request",
            otel.name = %name,
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = %path,
            rpc.system = if grpc { "grpc" } else { "" },
        );
        let parent = PROPAGATOR.extract(&HeaderExtractor(request.headers()));
        if opentelemetry::trace::TraceContextExt::span(&parent)
            .span_context()
            .is_valid()
        {
            let _ = span.set_parent(parent);
        }
        Either::Right(self.inner.call(request).instrument(span))
    }
}
