//! The fields of the request, attempt, cache and usage-record spans, as a subscriber sees
//! them.
//!
//! One test in its own binary with a global subscriber: `tracing` caches each callsite's
//! interest process-wide, so a thread-local subscriber misses the spans whose callsites
//! another test's thread reached first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::FailoverAdapter;
use failover_provider::{CompletionRequest, ErrorKind};
use failover_testkit::{ScriptedProvider, Step};
use failover_usage::MemoryUsageSink;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Every span's name, parent's name and fields, as a subscriber sees them.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<BTreeMap<u64, SpanSeen>>>);

#[derive(Debug, Clone, Default)]
struct SpanSeen {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = SpanSeen {
            name: attrs.metadata().name(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent())
                .map(|parent| parent.name()),
            ..SpanSeen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().insert(id.into_u64(), seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(seen) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

#[test]
fn the_request_span_holds_its_attempts_with_their_provider_model_outcome_and_error() {
    let spans = Spans::default();
    tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .init();
    let adapter = FailoverAdapter::builder()
        .provider(
            Arc::new(ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Throttled))),
            BreakerConfig::default(),
        )
        .provider(
            Arc::new(ScriptedProvider::new("openai").then(Step::reply("4"))),
            BreakerConfig::default(),
        )
        .cache(Arc::new(MemoryCache::new()))
        .usage_sink(Arc::new(MemoryUsageSink::default()))
        .build()
        .expect("the scripted adapter builds");
    let request = CompletionRequest::prompt("tenant-9", "agent-7", "gpt-4", "2+2?");
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(adapter.generate_completion(request))
        .unwrap();
    assert_eq!(answer.provider, "openai");
    let seen: Vec<SpanSeen> = spans.0.lock().unwrap().values().cloned().collect();
    let of = |name: &str| -> Vec<&SpanSeen> { seen.iter().filter(|s| s.name == name).collect() };
    let requests = of("failover.request");
    assert_eq!(requests.len(), 1, "{seen:#?}");
    let fields = &requests[0].fields;
    for (field, expected) in [
        ("failover.tenant", "tenant-9"),
        ("gen_ai.agent.id", "agent-7"),
        ("gen_ai.request.model", "gpt-4"),
        ("failover.stream", "false"),
        ("failover.outcome", "success"),
        ("failover.provider", "openai"),
        ("failover.cached", "false"),
        ("failover.attempts", "2"),
    ] {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some(expected),
            "{field}: {fields:?}"
        );
    }
    assert!(!fields["failover.request_id"].is_empty());

    let attempts = of("failover.attempt");
    assert_eq!(attempts.len(), 2, "{seen:#?}");
    let by_provider = |provider: &str| {
        attempts
            .iter()
            .find(|s| s.fields.get("failover.provider").map(String::as_str) == Some(provider))
            .unwrap_or_else(|| panic!("no attempt span of {provider}: {attempts:#?}"))
    };
    let bedrock = by_provider("bedrock");
    assert_eq!(bedrock.parent, Some("failover.request"));
    assert_eq!(bedrock.fields["failover.outcome"], "failure");
    assert_eq!(bedrock.fields["error.type"], "throttled");
    assert_eq!(bedrock.fields["otel.status_code"], "ERROR");
    assert_eq!(bedrock.fields["gen_ai.operation.name"], "chat");
    assert!(bedrock.fields["gen_ai.request.model"].contains("claude"));
    let openai = by_provider("openai");
    assert_eq!(openai.parent, Some("failover.request"));
    assert_eq!(openai.fields["failover.outcome"], "success");
    assert_eq!(openai.fields["failover.fallback"], "true");
    assert_eq!(openai.fields["gen_ai.usage.input_tokens"], "10");
    assert_eq!(openai.fields["gen_ai.usage.output_tokens"], "5");
    assert!(!openai.fields.contains_key("error.type"));
    // The model that served the answer, as the provider reported it.
    assert_eq!(openai.fields["gen_ai.response.model"], "gpt-4");

    let lookups = of("failover.cache.lookup");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].fields["failover.cache.result"], "miss");
    assert_eq!(
        of("failover.cache.store")[0].fields["failover.cache.result"],
        "stored"
    );
    // Two usage records (the failed call and the answer), inside the request.
    let records = of("failover.usage.record");
    assert_eq!(records.len(), 2, "{seen:#?}");
    assert!(
        records
            .iter()
            .all(|r| r.parent == Some("failover.attempt") || r.parent == Some("failover.request"))
    );
}
