//! OpenTelemetry traces over OTLP/HTTP (protobuf), for both binaries: the notifier and the
//! chat server (which already depends on this crate, so the exporter is set up in one place).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set:
//! then no exporter, no background thread, and no trace spans are even created on the hot
//! paths ([`enabled`] is checked first). The standard variables apply as the SDK reads them
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`).
//!
//! Trace context crosses processes as W3C `traceparent`/`tracestate`: in the bus envelope
//! between chat nodes and in AMQP headers from the outbox relay to the notifier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once, when an exporter was installed. Process-wide like the `tracing` subscriber it
/// belongs to; read on hot paths to skip span bookkeeping when nothing is exported.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an exporter was installed in this process).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes and stops the exporter when dropped (keep it alive for the process's lifetime).
#[must_use = "dropping the guard stops exporting"]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("OpenTelemetry: could not flush the last spans: {err}");
        }
    }
}

fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

/// The `tracing` layer that exports spans, when OTLP is configured; `service` names the
/// process unless `OTEL_SERVICE_NAME` does. Each process gets its own `service.instance.id`
/// (unless `OTEL_RESOURCE_ATTRIBUTES` names one), so the nodes of a cluster tell apart.
pub fn layer<S>(service: &'static str) -> (Option<impl tracing_subscriber::Layer<S>>, Guard)
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !configured() {
        return (None, Guard(None));
    }
    // reqwest (blocking, rustls without a compiled-in provider) for the exporter.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OpenTelemetry: no exporter ({err}); traces are off");
            return (None, Guard(None));
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    let named_instance = std::env::var("OTEL_RESOURCE_ATTRIBUTES")
        .is_ok_and(|attributes| attributes.contains("service.instance.id="));
    if !named_instance {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(service);
    ENABLED.store(true, Ordering::Relaxed);
    (
        Some(tracing_opentelemetry::layer().with_tracer(tracer)),
        Guard(Some(provider)),
    )
}

/// The W3C trace context of `span` (`traceparent`, and `tracestate` if any), or an empty map
/// when it is not being exported.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    if enabled() {
        let context = span.context();
        if context.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&context, &mut carrier);
        }
    }
    carrier
}

/// Just the `traceparent` of `span` (what the bus envelope carries).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    inject(span).remove("traceparent")
}

/// Makes `span` a child of the remote span named by `carrier` (no-op without a valid one).
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if !enabled() {
        return;
    }
    let context = TraceContextPropagator::new().extract(carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The trace context as AMQP message headers (`traceparent`, `tracestate`).
pub fn amqp_headers(carrier: HashMap<String, String>, headers: &mut lapin::types::FieldTable) {
    for (key, value) in carrier {
        headers.insert(
            key.into(),
            lapin::types::AMQPValue::LongString(value.into()),
        );
    }
}

/// The trace context an AMQP message carries in its headers (empty if none).
pub fn from_amqp_headers(properties: &lapin::BasicProperties) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    if let Some(headers) = properties.headers() {
        for key in ["traceparent", "tracestate"] {
            if let Some(lapin::types::AMQPValue::LongString(value)) = headers.inner().get(key) {
                carrier.insert(key.to_owned(), value.to_string());
            }
        }
    }
    carrier
}

/// [`set_parent`] from a bare `traceparent`.
pub fn set_parent_from(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    set_parent(span, &carrier);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_survives_amqp_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier = HashMap::from([
            ("traceparent".to_owned(), traceparent.to_owned()),
            ("tracestate".to_owned(), "vendor=1".to_owned()),
        ]);
        let mut headers = lapin::types::FieldTable::default();
        amqp_headers(carrier.clone(), &mut headers);
        let properties = lapin::BasicProperties::default().with_headers(headers);
        assert_eq!(from_amqp_headers(&properties), carrier);
        assert!(from_amqp_headers(&lapin::BasicProperties::default()).is_empty());
    }

    #[test]
    fn nothing_is_injected_when_traces_are_off() {
        // No exporter is installed in unit tests: no context, no headers, no parent.
        assert!(!enabled());
        let span = tracing::info_span!("anything");
        assert!(inject(&span).is_empty());
        assert_eq!(traceparent(&span), None);
    }
}
