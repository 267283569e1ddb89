//! The breaker's metrics, through the [`metrics`] facade: the transition counter
//! (`failover.breaker.transitions`) and the one-hot state gauge (`failover.breaker.state`).
//!
//! Both are written only by a transition or by naming a breaker, under its lock, so the
//! gauge's series change in the order of the transitions and the CLOSED hot path
//! (`try_acquire`, `record` of a success) never reaches them. The macros are called each
//! time rather than keeping handles: a handle is bound to the recorder installed when it was
//! registered, and a breaker may well be built before the binary installs its exporter.
//!
//! Public for breakers that keep their state elsewhere (a breaker shared by replicas reports
//! each transition its replica sees), so every breaker has the same series.

use std::sync::Arc;

use failover_telemetry::names::{label, metric};

use crate::BreakerState;

/// Counts one transition of the breaker `name` and moves its state gauge from `from` to `to`.
pub fn transition(name: &Arc<str>, from: BreakerState, to: BreakerState) {
    metrics::counter!(
        metric::BREAKER_TRANSITIONS,
        label::PROVIDER => Arc::clone(name),
        label::BREAKER_FROM => from.as_label(),
        label::BREAKER_TO => to.as_label(),
    )
    .increment(1);
    set_state(name, from, 0.0);
    set_state(name, to, 1.0);
}

/// Sets the whole one-hot gauge of the breaker `name`: 1 for `current`, 0 for every other
/// state, so a dashboard sees every series of a breaker before its first transition.
pub fn publish(name: &Arc<str>, current: BreakerState) {
    for state in BreakerState::ALL {
        set_state(name, state, if state == current { 1.0 } else { 0.0 });
    }
}

/// Sets every state of the breaker `name` to 0: it was renamed, and the series of its old
/// name must not keep claiming a state.
pub(crate) fn retire(name: &Arc<str>) {
    for state in BreakerState::ALL {
        set_state(name, state, 0.0);
    }
}

fn set_state(name: &Arc<str>, state: BreakerState, value: f64) {
    metrics::gauge!(
        metric::BREAKER_STATE,
        label::PROVIDER => Arc::clone(name),
        label::BREAKER_STATE => state.as_label(),
    )
    .set(value);
}
