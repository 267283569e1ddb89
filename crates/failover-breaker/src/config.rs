//! The breaker's tuning knobs.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The largest accepted [`BreakerConfig::window_size`].
pub const MAX_WINDOW_SIZE: u32 = 1 << 20;

/// The longest accepted [`BreakerConfig::window_duration`]: one hour (3600 one-second
/// buckets).
pub const MAX_WINDOW_DURATION: Duration = Duration::from_secs(3600);

/// The largest accepted [`BreakerConfig::max_failures_per_tenant`]. The cap is enforced by
/// remembering, per tracked tenant, where its counted failures sit in the window, so it bounds
/// that memory.
pub const MAX_FAILURES_PER_TENANT: u32 = 1024;

/// Configuration of a [`CircuitBreaker`](crate::CircuitBreaker).
///
/// Start from [`BreakerConfig::default()`] and change fields directly or with the `with_*`
/// setters; [`validate`](BreakerConfig::validate) checks the result (the breaker's
/// constructors call it). With serde, every field is optional (missing fields take their
/// defaults) and durations are written as `"30s"`, `"250ms"`, `"5m"`, `"1h"` or a number of
/// seconds.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `failure_rate_threshold` | `0.5` | trip when failures / outcomes in the window reaches this (0 < x ≤ 1) |
/// | `window_size` | `20` | the window holds the last N outcomes |
/// | `minimum_calls` | `10` | the rate is judged only once the window holds this many outcomes |
/// | `consecutive_failures` | `5` | trip on N failures in a row regardless of the rate; 0 disables |
/// | `open_duration` | `30s` | the first open period |
/// | `max_open_duration` | `5m` | the cap of the backed-off period |
/// | `backoff_multiplier` | `2.0` | each consecutive trip without a close multiplies the period |
/// | `jitter` | `0.1` | the period is scaled by a uniform factor in `[1 − jitter, 1 + jitter]` |
/// | `jitter_seed` | `None` | seeds the jitter RNG for reproducible periods |
/// | `half_open_max_probes` | `2` | concurrent probe calls admitted in HALF_OPEN |
/// | `half_open_successes_to_close` | `2` | probe successes that close the breaker |
/// | `window_duration` | `None` | `Some(d)`: a time window of the outcomes of the last `d` (whole seconds) instead of the last `window_size` |
/// | `max_failures_per_tenant` | `0` | at most this many of the window's counted failures from one tenant; `0` disables |
/// | `config_fault_open_duration` | `10m` | how long a trip caused by a configuration fault holds OPEN |
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Trip when `failures / (successes + failures)` over the window is at least this, once the
    /// window holds [`minimum_calls`](Self::minimum_calls) outcomes. `0 < x ≤ 1`; default `0.5`.
    pub failure_rate_threshold: f64,
    /// The window is the last `window_size` recorded outcomes (count-based, sliding).
    /// `1..=`[`MAX_WINDOW_SIZE`]; default `20`. Unused (but still range-checked) when
    /// [`window_duration`](Self::window_duration) makes the window time-based.
    pub window_size: u32,
    /// Outcomes the window must hold before the failure rate is judged.
    /// `1..=window_size` for a count window, `≥ 1` for a time window; default `10`.
    pub minimum_calls: u32,
    /// Trip on this many consecutive failures whatever the rate; `0` disables. Default `5`.
    pub consecutive_failures: u32,
    /// The open period after the first trip. Default 30 s.
    #[serde(deserialize_with = "de_duration")]
    pub open_duration: Duration,
    /// The cap of the backed-off open period (a provider's `retry_after` may exceed it).
    /// At least `open_duration`; default 5 min.
    #[serde(deserialize_with = "de_duration")]
    pub max_open_duration: Duration,
    /// The open period of the k-th consecutive trip (trips without a close in between) is
    /// `open_duration × backoff_multiplier^(k−1)`, capped. `≥ 1`; default `2.0`.
    pub backoff_multiplier: f64,
    /// Each open period is scaled by a factor drawn uniformly from
    /// `[1 − jitter, 1 + jitter]` (then capped at `max_open_duration`), so that breakers
    /// opened together do not probe together. `0 ≤ x < 1`; default `0.1`; `0` disables.
    pub jitter: f64,
    /// Seed of the jitter RNG; `None` (the default) seeds it randomly. Set it to make open
    /// periods reproducible.
    pub jitter_seed: Option<u64>,
    /// How many probe calls HALF_OPEN admits at once; more callers are rejected. `≥ 1`;
    /// default `2`: one probe is a coin toss on a flaky provider and a single hung probe
    /// would stall recovery, while two give twice the evidence at the same risk to traffic.
    pub half_open_max_probes: u32,
    /// Probe successes (counted since entering HALF_OPEN) that close the breaker.
    /// `1..=half_open_max_probes`; default `2`.
    pub half_open_successes_to_close: u32,
    /// `None` (the default): the window is count-based, the last
    /// [`window_size`](Self::window_size) outcomes. `Some(d)`: the window is time-based, the
    /// outcomes of the last `d`, aggregated in one-second buckets (an outcome counts for
    /// between `d − 1 s` and `d`); `window_size` is then unused and
    /// [`minimum_calls`](Self::minimum_calls) counts the calls within the last `d`. Whole
    /// seconds, `1 s..=`[`MAX_WINDOW_DURATION`].
    #[serde(deserialize_with = "de_optional_duration")]
    pub window_duration: Option<Duration>,
    /// Caps how many of the window's counted failures one tenant (as named to
    /// [`Breaker::try_acquire_for`](crate::Breaker::try_acquire_for)) can contribute: a
    /// failure from a tenant that already has this many in the window counts neither way
    /// (like [`Outcome::Ignored`](crate::Outcome::Ignored), also for the consecutive-failure
    /// rule), so one tenant's bad requests cannot open the provider for everyone. Anonymous
    /// callers ([`try_acquire`](crate::Breaker::try_acquire), or an empty tenant) and
    /// HALF_OPEN probes are not capped. `0` (the default) disables the cap;
    /// `0..=`[`MAX_FAILURES_PER_TENANT`].
    pub max_failures_per_tenant: u32,
    /// When the outcome that trips the breaker (or fails a HALF_OPEN probe) is
    /// [`Outcome::NeedsOperator`](crate::Outcome::NeedsOperator), the breaker holds OPEN for
    /// this long — or for the normal backed-off period, or until a retry hint has elapsed,
    /// whichever is longest — and its snapshot reports `needs_operator`. Not jittered and not
    /// capped by `max_open_duration`. Default 10 min.
    #[serde(deserialize_with = "de_duration")]
    pub config_fault_open_duration: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate_threshold: 0.5,
            window_size: 20,
            minimum_calls: 10,
            consecutive_failures: 5,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            backoff_multiplier: 2.0,
            jitter: 0.1,
            jitter_seed: None,
            half_open_max_probes: 2,
            half_open_successes_to_close: 2,
            window_duration: None,
            max_failures_per_tenant: 0,
            config_fault_open_duration: Duration::from_secs(600),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}

impl BreakerConfig {
    setters! {
        /// Sets [`failure_rate_threshold`](Self::failure_rate_threshold).
        with_failure_rate_threshold => failure_rate_threshold: f64;
        /// Sets [`window_size`](Self::window_size).
        with_window_size => window_size: u32;
        /// Sets [`minimum_calls`](Self::minimum_calls).
        with_minimum_calls => minimum_calls: u32;
        /// Sets [`consecutive_failures`](Self::consecutive_failures) (`0` disables).
        with_consecutive_failures => consecutive_failures: u32;
        /// Sets [`open_duration`](Self::open_duration).
        with_open_duration => open_duration: Duration;
        /// Sets [`max_open_duration`](Self::max_open_duration).
        with_max_open_duration => max_open_duration: Duration;
        /// Sets [`backoff_multiplier`](Self::backoff_multiplier).
        with_backoff_multiplier => backoff_multiplier: f64;
        /// Sets [`jitter`](Self::jitter) (`0` disables).
        with_jitter => jitter: f64;
        /// Sets [`jitter_seed`](Self::jitter_seed).
        with_jitter_seed => jitter_seed: Option<u64>;
        /// Sets [`half_open_max_probes`](Self::half_open_max_probes).
        with_half_open_max_probes => half_open_max_probes: u32;
        /// Sets [`half_open_successes_to_close`](Self::half_open_successes_to_close).
        with_half_open_successes_to_close => half_open_successes_to_close: u32;
        /// Sets [`window_duration`](Self::window_duration) (`None`: count-based window).
        with_window_duration => window_duration: Option<Duration>;
        /// Sets [`max_failures_per_tenant`](Self::max_failures_per_tenant) (`0` disables).
        with_max_failures_per_tenant => max_failures_per_tenant: u32;
        /// Sets [`config_fault_open_duration`](Self::config_fault_open_duration).
        with_config_fault_open_duration => config_fault_open_duration: Duration;
    }

    /// Checks every field's range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        let err = |field, reason: String| Err(BreakerConfigError { field, reason });
        let t = self.failure_rate_threshold;
        if !(t.is_finite() && t > 0.0 && t <= 1.0) {
            return err(
                "failure_rate_threshold",
                format!("must be in (0, 1], got {t}"),
            );
        }
        if self.window_size == 0 || self.window_size > MAX_WINDOW_SIZE {
            return err(
                "window_size",
                format!("must be in 1..={MAX_WINDOW_SIZE}, got {}", self.window_size),
            );
        }
        if let Some(d) = self.window_duration {
            if d.subsec_nanos() != 0 || d.is_zero() || d > MAX_WINDOW_DURATION {
                return err(
                    "window_duration",
                    format!("must be whole seconds in 1s..=3600s, got {d:?}"),
                );
            }
            if self.minimum_calls == 0 {
                return err("minimum_calls", "must be at least 1, got 0".to_owned());
            }
        } else if self.minimum_calls == 0 || self.minimum_calls > self.window_size {
            return err(
                "minimum_calls",
                format!(
                    "must be in 1..=window_size ({}), got {}",
                    self.window_size, self.minimum_calls
                ),
            );
        }
        if self.max_open_duration < self.open_duration {
            return err(
                "max_open_duration",
                format!(
                    "must be at least open_duration ({:?}), got {:?}",
                    self.open_duration, self.max_open_duration
                ),
            );
        }
        let m = self.backoff_multiplier;
        if !(m.is_finite() && m >= 1.0) {
            return err(
                "backoff_multiplier",
                format!("must be finite and >= 1, got {m}"),
            );
        }
        let j = self.jitter;
        if !(j.is_finite() && (0.0..1.0).contains(&j)) {
            return err("jitter", format!("must be in [0, 1), got {j}"));
        }
        if self.half_open_max_probes == 0 {
            return err(
                "half_open_max_probes",
                "must be at least 1, got 0".to_owned(),
            );
        }
        let s = self.half_open_successes_to_close;
        if s == 0 || s > self.half_open_max_probes {
            return err(
                "half_open_successes_to_close",
                format!(
                    "must be in 1..=half_open_max_probes ({}), got {s}",
                    self.half_open_max_probes
                ),
            );
        }
        if self.max_failures_per_tenant > MAX_FAILURES_PER_TENANT {
            return err(
                "max_failures_per_tenant",
                format!(
                    "must be in 0..={MAX_FAILURES_PER_TENANT}, got {}",
                    self.max_failures_per_tenant
                ),
            );
        }
        Ok(())
    }

    /// The time window's length in whole seconds (its bucket count), if time-based.
    pub(crate) fn window_seconds(&self) -> Option<u64> {
        self.window_duration.map(|d| d.as_secs().max(1))
    }
}

/// A [`BreakerConfig`] field is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfigError {
    /// The offending field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid breaker config: `{}` {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for BreakerConfigError {}

fn de_duration<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    de.deserialize_any(DurationVisitor)
}

fn de_optional_duration<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<Duration>, D::Error> {
    de.deserialize_any(DurationVisitor).map(Some)
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration: seconds as a number, or a string like \"250ms\", \"30s\", \"5m\", \"1h\"",
        )
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(|e| E::custom(format!("invalid duration {v}: {e}")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).ok_or_else(|| {
            E::custom(format!(
                "invalid duration {v:?}: expected a number followed by ms, s, m or h"
            ))
        })
    }
}

/// Parses `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1h"`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, MapDeserializer};

    #[test]
    fn default_is_valid() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_range_is_checked_and_named() {
        let d = BreakerConfig::default;
        let cases = [
            (
                d().with_failure_rate_threshold(0.0),
                "failure_rate_threshold",
            ),
            (
                d().with_failure_rate_threshold(1.5),
                "failure_rate_threshold",
            ),
            (
                d().with_failure_rate_threshold(f64::NAN),
                "failure_rate_threshold",
            ),
            (d().with_window_size(0), "window_size"),
            (d().with_window_size(MAX_WINDOW_SIZE + 1), "window_size"),
            (d().with_minimum_calls(0), "minimum_calls"),
            (d().with_minimum_calls(21), "minimum_calls"),
            (
                d().with_max_open_duration(Duration::from_secs(1)),
                "max_open_duration",
            ),
            (d().with_backoff_multiplier(0.5), "backoff_multiplier"),
            (
                d().with_backoff_multiplier(f64::INFINITY),
                "backoff_multiplier",
            ),
            (d().with_jitter(1.0), "jitter"),
            (d().with_jitter(-0.1), "jitter"),
            (d().with_half_open_max_probes(0), "half_open_max_probes"),
            (
                d().with_half_open_successes_to_close(0),
                "half_open_successes_to_close",
            ),
            (
                d().with_half_open_successes_to_close(3),
                "half_open_successes_to_close",
            ),
            (
                d().with_window_duration(Some(Duration::ZERO)),
                "window_duration",
            ),
            (
                d().with_window_duration(Some(Duration::from_millis(1500))),
                "window_duration",
            ),
            (
                d().with_window_duration(Some(Duration::from_secs(3601))),
                "window_duration",
            ),
            (
                d().with_window_duration(Some(Duration::from_secs(60)))
                    .with_minimum_calls(0),
                "minimum_calls",
            ),
            (
                d().with_max_failures_per_tenant(MAX_FAILURES_PER_TENANT + 1),
                "max_failures_per_tenant",
            ),
        ];
        for (config, field) in cases {
            let e = config.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }

    #[test]
    fn deserializes_with_defaults_for_missing_fields() {
        let map = vec![("open_duration", "10s".into_deserializer())];
        let config =
            BreakerConfig::deserialize(MapDeserializer::<_, DeError>::new(map.into_iter()))
                .unwrap();
        assert_eq!(config.open_duration, Duration::from_secs(10));
        assert_eq!(config.window_size, 20);

        let map = vec![("window_size", 50u32.into_deserializer())];
        let config =
            BreakerConfig::deserialize(MapDeserializer::<_, DeError>::new(map.into_iter()))
                .unwrap();
        assert_eq!(config.window_size, 50);

        let map = vec![
            ("window_duration", "60s".into_deserializer()),
            ("config_fault_open_duration", "1h".into_deserializer()),
        ];
        let config =
            BreakerConfig::deserialize(MapDeserializer::<_, DeError>::new(map.into_iter()))
                .unwrap();
        assert_eq!(config.window_duration, Some(Duration::from_secs(60)));
        assert_eq!(config.config_fault_open_duration, Duration::from_secs(3600));
        assert_eq!(config.max_failures_per_tenant, 0);

        let map = vec![("no_such_field", 1u32.into_deserializer())];
        assert!(
            BreakerConfig::deserialize(MapDeserializer::<_, DeError>::new(map.into_iter()))
                .is_err()
        );
    }
}
