//! The gRPC server metrics of go-grpc-middleware (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`,
//! `grpc_server_handling_seconds`), with its labels, counted by a tower layer around each gRPC
//! service.
//!
//! The layer sits inside the gRPC-Web translation, so gRPC-Web calls are seen as the gRPC calls
//! they become and counted with the rest. A call's code is known when its response ends: from the
//! `grpc-status` of a header-only (trailers-only) error response, or of the trailers after the
//! messages; a response dropped before its end (the client went away) counts as `Canceled`.
//! Messages are counted from the 5-byte frame headers of the bodies, in plain fields of the call's
//! own body, and added to the shared counters once, as the call ends.
//!
//! Only methods the server serves get labels (read from the services' descriptors); a request for
//! any other path passes through uncounted, so clients cannot grow the label sets.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Layer, Service};

/// go-grpc-middleware's default buckets (Prometheus' `DefBuckets`), and longer ones for streams.
const HANDLING_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The labels of a method: `grpc_type` (`unary`, `client_stream`, `server_stream`,
/// `bidi_stream`), `grpc_service` (`toolstream.v1.ToolService`) and `grpc_method` (`RunTool`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

/// Every method the server serves, by request path (`/toolstream.v1.ToolService/RunTool`), read
/// once from the descriptors the services are built from.
static METHODS: LazyLock<HashMap<String, MethodLabels>> = LazyLock::new(|| {
    let sets = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashMap::new();
    for set in sets {
        let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let name = service.name.unwrap_or_default();
                let full: &'static str = Box::leak(if package.is_empty() {
                    name.into_boxed_str()
                } else {
                    format!("{package}.{name}").into_boxed_str()
                });
                for method in service.method {
                    let grpc_type = match (
                        method.client_streaming.unwrap_or(false),
                        method.server_streaming.unwrap_or(false),
                    ) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    let method_name: &'static str =
                        Box::leak(method.name.unwrap_or_default().into_boxed_str());
                    methods.insert(
                        format!("/{full}/{method_name}"),
                        MethodLabels {
                            grpc_type,
                            grpc_service: full,
                            grpc_method: method_name,
                        },
                    );
                }
            }
        }
    }
    methods
});

fn handling_histogram() -> Histogram {
    Histogram::new(HANDLING_BUCKETS)
}

/// The shared counters of every gRPC call.
pub struct GrpcMetrics {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    msg_received: Family<MethodLabels, Counter>,
    msg_sent: Family<MethodLabels, Counter>,
    handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            msg_received: Family::default(),
            msg_sent: Family::default(),
            handling: Family::new_with_constructor(handling_histogram),
        }
    }
}

impl GrpcMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            self.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            self.handled.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            self.msg_received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            self.msg_sent.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            self.handling.clone(),
        );
    }
}

/// Wraps a gRPC service (put it inside `GrpcWebLayer`) so that its calls are counted.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl GrpcMetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<GrpcMetrics>) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// A gRPC service whose calls are counted.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, ResBody> Service<http::Request<Body>> for Metered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(labels) = METHODS.get(request.uri().path()) else {
            let call = self.inner.call(request);
            return Box::pin(async move { Ok(call.await?.map(Body::new)) });
        };
        let metrics = Arc::clone(&self.metrics);
        metrics.started.get_or_create(labels).inc();
        let received = metrics.msg_received.get_or_create(labels).clone();
        let request = request.map(|body| {
            Body::new(Counted {
                inner: body,
                frames: FrameCounter::default(),
                call: None,
                on_end: Some(received),
            })
        });
        let call = CallEnd {
            metrics,
            labels: labels.clone(),
            started: Instant::now(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A header-only response carries its status in the headers: the call ended.
            if let Some(code) = header_code(response.headers()) {
                call.ended(code, 0);
                return Ok(response.map(Body::new));
            }
            Ok(response.map(|body| {
                Body::new(Counted {
                    inner: body,
                    frames: FrameCounter::default(),
                    call: Some(call),
                    on_end: None,
                })
            }))
        })
    }
}

/// What a call needs to be counted as handled once its response ends.
struct CallEnd {
    metrics: Arc<GrpcMetrics>,
    labels: MethodLabels,
    started: Instant,
}

impl CallEnd {
    fn ended(self, code: tonic::Code, sent: u64) {
        let CallEnd {
            metrics,
            labels,
            started,
        } = self;
        metrics
            .handling
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if sent > 0 {
            metrics.msg_sent.get_or_create(&labels).inc_by(sent);
        }
        metrics
            .handled
            .get_or_create(&HandledLabels {
                grpc_type: labels.grpc_type,
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_code: super::code_name(code),
            })
            .inc();
    }
}

fn header_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok()?.trim().parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// Counts gRPC messages in a body from their 5-byte headers (a flag and a big-endian length),
/// whatever way the bytes are split into frames.
#[derive(Default)]
struct FrameCounter {
    /// Bytes of the current message's header seen so far, and the header itself.
    header_len: usize,
    header: [u8; 5],
    /// Bytes of the current message's body still to skip.
    remaining: u64,
    messages: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= skip as u64;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.messages += 1;
                let length = [
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ];
                self.remaining = u64::from(u32::from_be_bytes(length));
            }
        }
    }
}

/// A request or response body whose messages are counted. A response body also ends its call:
/// with the trailers' status, `Unknown` when it ends without one, `Canceled` when dropped first.
struct Counted<B> {
    inner: B,
    frames: FrameCounter,
    /// The response's call, until it is counted as handled.
    call: Option<CallEnd>,
    /// The request's received-messages counter, until the request body ends.
    on_end: Option<Counter>,
}

impl<B> Counted<B> {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(call) = self.call.take() {
            call.ended(code, self.frames.messages);
        }
        if let Some(received) = self.on_end.take() {
            received.inc_by(self.frames.messages);
        }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.frames.feed(data.chunk());
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = header_code(trailers).unwrap_or(tonic::Code::Unknown);
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(tonic::Code::Internal),
            Poll::Ready(None) => this.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        // A response dropped before its end: the client went away.
        self.finish(tonic::Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(length: u32) -> Vec<u8> {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, length as usize));
        bytes
    }

    #[test]
    fn messages_are_counted_however_the_bytes_are_split() {
        let stream: Vec<u8> = [message(3), message(0), message(300), message(1)].concat();
        for chunk in [1, 2, 4, 5, 6, 64, stream.len()] {
            let mut counter = FrameCounter::default();
            for piece in stream.chunks(chunk) {
                counter.feed(piece);
            }
            assert_eq!(counter.messages, 4, "chunks of {chunk}");
        }
    }

    #[test]
    fn every_served_method_has_its_labels() {
        let run_tool = &METHODS["/toolstream.v1.ToolService/RunTool"];
        assert_eq!(run_tool.grpc_type, "server_stream");
        assert_eq!(run_tool.grpc_method, "RunTool");
        assert_eq!(METHODS["/grpc.health.v1.Health/Check"].grpc_type, "unary");
        assert_eq!(
            METHODS["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"].grpc_type,
            "bidi_stream"
        );
    }
}
