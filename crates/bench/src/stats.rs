//! Latency percentiles and a small seeded generator.

use std::time::Duration;

/// Latencies, sorted once, read by percentile.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts `samples`.
    #[must_use]
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// How many samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (nearest rank) in milliseconds; 0 without samples.
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank from 0 to the number of samples, for p from 0 to 100"
    )]
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.0.len()) - 1;
        self.0[i].as_secs_f64() * 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert!((l.percentile_ms(50.0) - 50.0).abs() < 1e-9);
        assert!((l.percentile_ms(99.0) - 99.0).abs() < 1e-9);
        assert!((l.percentile_ms(100.0) - 100.0).abs() < 1e-9);
        assert!(Latencies::default().percentile_ms(99.0).abs() < 1e-9);
    }
}
