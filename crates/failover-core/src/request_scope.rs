//! The request layers around one request: asked in registration order before the cache,
//! told in reverse order how the request ended — on every path, the caller dropping the
//! request included.

use std::sync::Arc;
use std::time::Instant;

use crate::accounting::RequestContext;
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::layers::{RequestInfo, RequestOutcome, Ticket};
use crate::prepare::Prepared;

/// The request layers that admitted one request, owed one `after_request` each.
///
/// Dropping the scope before [`finish`](Self::finish) means the caller went away: the
/// layers are told [`RequestOutcome::Cancelled`].
pub(crate) struct RequestScope {
    /// `None` when no request layer is registered (nothing to run, nothing allocated), or
    /// once finished.
    admitted: Option<Admitted>,
}

struct Admitted {
    engine: Arc<Engine>,
    context: Arc<RequestContext>,
    deadline: Option<Instant>,
    /// One per layer that admitted the request, in registration order.
    tickets: Vec<Ticket>,
}

impl RequestScope {
    /// Asks every request layer, in registration order, to admit `prepared`. On a
    /// rejection (or the deadline passing while a layer decides) the layers that had
    /// admitted are told the error, which is returned.
    pub(crate) async fn enter(
        engine: &Arc<Engine>,
        prepared: &Prepared,
    ) -> Result<Self, FailoverError> {
        if engine.request_layers.is_empty() {
            return Ok(Self { admitted: None });
        }
        let mut scope = Self {
            admitted: Some(Admitted {
                engine: Arc::clone(engine),
                context: Arc::clone(&prepared.context),
                deadline: prepared.deadline,
                tickets: Vec::with_capacity(engine.request_layers.len()),
            }),
        };
        for layer in &engine.request_layers {
            let info = RequestInfo::new(&prepared.context, prepared.deadline);
            let error = match layer
                .before_request(info, &prepared.request)
                .decide(prepared.deadline)
                .await
            {
                Some(Ok(ticket)) => {
                    if let Some(admitted) = scope.admitted.as_mut() {
                        admitted.tickets.push(ticket);
                    }
                    continue;
                }
                Some(Err(rejection)) => FailoverError::Rejected {
                    request_id: prepared.request_id().clone(),
                    layer: layer.name().to_owned(),
                    reason: rejection.reason().to_owned(),
                    retry_after: rejection.retry_after(),
                    kind: rejection.kind(),
                },
                None => FailoverError::DeadlineExceeded {
                    request_id: prepared.request_id().clone(),
                    attempts: Vec::new(),
                },
            };
            tracing::info!(
                request_id = %prepared.request_id(),
                layer = layer.name(),
                %error,
                "request stopped by a request layer"
            );
            scope.finish(&RequestOutcome::Failed(&error));
            return Err(error);
        }
        Ok(scope)
    }

    /// Tells every layer that admitted the request how it ended, innermost first.
    pub(crate) fn finish(&mut self, outcome: &RequestOutcome<'_>) {
        let Some(admitted) = self.admitted.take() else {
            return;
        };
        let info = RequestInfo::new(&admitted.context, admitted.deadline);
        let layers = &admitted.engine.request_layers[..admitted.tickets.len()];
        for (layer, ticket) in layers.iter().zip(admitted.tickets).rev() {
            layer.after_request(info, ticket, outcome);
        }
    }

    /// Tells the layers how a request ended with `result`, and hands the result on.
    pub(crate) fn finish_with<T>(
        &mut self,
        result: Result<T, FailoverError>,
        outcome: impl FnOnce(&T) -> RequestOutcome<'_>,
    ) -> Result<T, FailoverError> {
        if self.admitted.is_some()
            && let Ok(value) = &result
        {
            self.finish(&outcome(value));
        }
        self.finish_on_error(result)
    }

    /// Tells the layers of an error that ends the request, and hands the result on; an
    /// `Ok` goes on (the request has not ended yet, as with a stream being returned).
    pub(crate) fn finish_on_error<T>(
        &mut self,
        result: Result<T, FailoverError>,
    ) -> Result<T, FailoverError> {
        if let Err(error) = &result {
            self.finish(&RequestOutcome::Failed(error));
        }
        result
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        self.finish(&RequestOutcome::Cancelled);
    }
}
