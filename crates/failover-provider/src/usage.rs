//! Token counts and exact money.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Tokens one call consumed, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens billed at the full input price.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (cheaper), where reported.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache, where reported.
    pub cache_write_tokens: u64,
}

impl TokenUsage {
    /// Usage with input and output tokens only.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// All tokens counted (input, output and cache tokens). Saturates rather than
    /// overflows: the counts come from outside.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }
}

impl Add for TokenUsage {
    type Output = TokenUsage;

    fn add(self, rhs: TokenUsage) -> TokenUsage {
        // Saturating: a misbehaving server's counts must not panic an aggregate.
        TokenUsage {
            input_tokens: self.input_tokens.saturating_add(rhs.input_tokens),
            output_tokens: self.output_tokens.saturating_add(rhs.output_tokens),
            cache_read_tokens: self.cache_read_tokens.saturating_add(rhs.cache_read_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_add(rhs.cache_write_tokens),
        }
    }
}

impl AddAssign for TokenUsage {
    fn add_assign(&mut self, rhs: TokenUsage) {
        *self = *self + rhs;
    }
}

impl Sum for TokenUsage {
    fn sum<I: Iterator<Item = TokenUsage>>(iter: I) -> TokenUsage {
        iter.fold(TokenUsage::default(), Add::add)
    }
}

/// An amount of US dollars, held as an exact decimal so sums never drift.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Usd(Decimal);

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    /// Wraps a decimal amount.
    pub fn new(amount: Decimal) -> Self {
        Self(amount)
    }

    /// The exact decimal amount.
    pub fn amount(&self) -> Decimal {
        self.0
    }

    /// The amount in nano-dollars (USD × 10⁹), rounded half away from zero; 0 for a
    /// negative amount, `u64::MAX` past it. Integer metrics of cost sum these exactly.
    pub fn nanos(&self) -> u64 {
        use rust_decimal::prelude::ToPrimitive;
        let saturated = if self.0.is_sign_negative() {
            0
        } else {
            u64::MAX
        };
        self.0
            .checked_mul(Decimal::from(1_000_000_000u64))
            .and_then(|nanos| nanos.round().to_u64())
            .unwrap_or(saturated)
    }

    /// A lossy `f64` for display or metrics; never sum these.
    pub fn to_f64(&self) -> f64 {
        use rust_decimal::prelude::ToPrimitive;
        self.0.to_f64().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.0.normalize())
    }
}

impl Add for Usd {
    type Output = Usd;

    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        self.0 += rhs.0;
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_and_saturate() {
        assert_eq!(Usd::new(Decimal::new(15, 10)).nanos(), 2); // 1.5 nUSD
        assert_eq!(Usd::new(Decimal::new(123, 2)).nanos(), 1_230_000_000);
        assert_eq!(Usd::new(Decimal::new(-1, 0)).nanos(), 0);
        assert_eq!(Usd::new(Decimal::MAX).nanos(), u64::MAX);
    }

    #[test]
    fn usd_sums_exactly_where_floats_drift() {
        let tenth = Usd::new(Decimal::new(1, 1));
        let sum: Usd = std::iter::repeat_n(tenth, 10).sum();
        assert_eq!(sum, Usd::new(Decimal::ONE));
        let float_sum: f64 = std::iter::repeat_n(0.1_f64, 10).sum();
        assert_ne!(
            float_sum, 1.0,
            "the float sum drifts; the decimal one must not"
        );
    }

    #[test]
    fn total_counts_every_token_class() {
        let usage = TokenUsage {
            input_tokens: 3,
            output_tokens: 4,
            cache_read_tokens: 5,
            cache_write_tokens: 6,
        };
        assert_eq!(usage.total_tokens(), 18);
        assert_eq!((usage + usage).output_tokens, 8);
    }
}
