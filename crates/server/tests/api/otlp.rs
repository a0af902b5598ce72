//! A real OTLP/HTTP receiver for the trace tests: `POST /v1/traces` with the protobuf body the
//! exporters send, decoded with `opentelemetry-proto`, on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::sync::watch;

/// One exported span, with the resource it came from.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Empty for a root span.
    pub parent_span_id: Vec<u8>,
    pub service: String,
    /// `service.instance.id`: which process exported it.
    pub instance: String,
}

pub struct OtlpReceiver {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` should be (the exporter appends `/v1/traces`).
    pub endpoint: String,
    spans: watch::Receiver<Vec<ReceivedSpan>>,
    _server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let (tx, rx) = watch::channel(Vec::new());
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(Arc::new(tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        OtlpReceiver {
            endpoint,
            spans: rx,
            _server: server,
        }
    }

    /// Waits (bounded) until the received spans satisfy `done`, and returns them all.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let mut spans = self.spans.clone();
        match tokio::time::timeout(Duration::from_secs(20), spans.wait_for(|s| done(s))).await {
            Ok(Ok(spans)) => spans.clone(),
            _ => {
                let seen: Vec<String> =
                    self.spans.borrow().iter().map(|s| s.name.clone()).collect();
                panic!("{what}: not received in time; spans so far: {seen:?}")
            }
        }
    }
}

async fn export(
    State(spans): State<Arc<watch::Sender<Vec<ReceivedSpan>>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            b"not OTLP protobuf".to_vec(),
        );
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let attribute = |key: &str| {
            resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == key))
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let (service, instance) = (attribute("service.name"), attribute("service.instance.id"));
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                received.push(ReceivedSpan {
                    name: span.name.clone(),
                    trace_id: span.trace_id.clone(),
                    span_id: span.span_id.clone(),
                    parent_span_id: span.parent_span_id.clone(),
                    service: service.clone(),
                    instance: instance.clone(),
                });
            }
        }
    }
    spans.send_modify(|all| all.extend(received));
    // An empty ExportTraceServiceResponse (full success) encodes to no bytes.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
}

/// The span of that name in `trace`, if exported.
pub fn find<'a>(spans: &'a [ReceivedSpan], trace: &[u8], name: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.trace_id == trace && s.name == name)
}
