//! `trace_id` and `span_id` on JSON log lines, so a log line leads to its trace. The JSON
//! formatter of tracing-subscriber knows nothing of OpenTelemetry: this wraps it and appends the
//! two fields (lowercase hex, as W3C `traceparent` and every trace UI spell them) when the event's
//! span has a valid OpenTelemetry context. Lines outside an exported span are written unchanged.
use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// An event format that adds `trace_id` and `span_id` to the JSON object `F` writes.
pub(crate) struct WithTraceIds<F>(pub(crate) F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = ids(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON formatter writes one object and a newline; anything else passes unchanged.
        match line.trim_end().strip_suffix('}') {
            Some(head) if head.len() > 1 => writeln!(
                writer,
                r#"{head},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The ids of the innermost span of the event that has a valid OpenTelemetry context.
fn ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, SpanId)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    // Spans below INFO are not exported (and have no context): their nearest exported ancestor's.
    ctx.event_scope()?.find_map(|span| {
        let extensions = span.extensions();
        let data = extensions.get::<OtelData>()?;
        let (trace_id, span_id) = (data.trace_id()?, data.span_id()?);
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some((trace_id, span_id))
    })
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::WithTraceIds;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_in_an_exported_span_carry_its_trace_and_span_ids() {
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = SdkTracerProvider::builder().build();
        // The same layers as `telemetry::install`, on this thread only.
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .map_event_format(WithTraceIds)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            let context = span.context();
            let sc = context.span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert_eq!(parsed[0]["message"], "outside");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        assert_eq!(parsed[1]["message"], "inside");
        assert_eq!(parsed[1]["answer"], 42);
        assert_eq!(parsed[1]["trace_id"], ids.0.as_str(), "{text}");
        assert_eq!(parsed[1]["span_id"], ids.1.as_str(), "{text}");
    }
}
