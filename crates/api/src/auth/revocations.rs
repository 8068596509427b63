//! Which local tokens the access log's read model has said are not revoked, and as of where it
//! stood: a token asked about again before that read model moves on is still not revoked, so
//! the check costs no statement.
//!
//! A revocation is an event; the read model holds it from the position it was applied at. The
//! position comes from this process's projector ([`kring_projections::StatusBoard::at`], set after each commit), so
//! an entry is only as good as that board: when another process projects (the board lags), or
//! none runs here, every check asks the read model.

use kring_store::Position;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// At most this many tokens are remembered; past it, the memory starts again empty.
const MAX_REMEMBERED: usize = 10_000;

/// Tokens known not to be revoked, each with the (generation, position) of the access log's
/// read model at which that was read.
#[derive(Debug, Default)]
pub struct Unrevoked {
    seen: Mutex<HashMap<Uuid, (i64, Position)>>,
}

impl Unrevoked {
    /// Whether token `jti` is known not to be revoked with the read model at `at`.
    #[must_use]
    pub fn holds(&self, jti: Uuid, at: (i64, Position)) -> bool {
        self.seen
            .lock()
            .is_ok_and(|seen| seen.get(&jti) == Some(&at))
    }

    /// Remembers that the read model, standing at least at `at` when asked, said `jti` is not
    /// revoked.
    pub fn remember(&self, jti: Uuid, at: (i64, Position)) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&jti) {
                seen.clear();
            }
            seen.insert(jti, at);
        }
    }

    /// How many tokens are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_unrevoked_only_at_the_position_it_was_read_at() {
        let unrevoked = Unrevoked::default();
        let jti = Uuid::now_v7();
        assert!(!unrevoked.holds(jti, (1, 10)));
        unrevoked.remember(jti, (1, 10));
        assert!(unrevoked.holds(jti, (1, 10)));
        assert!(!unrevoked.holds(jti, (1, 11)), "the read model moved on");
        assert!(!unrevoked.holds(jti, (2, 10)), "another generation");
        assert!(!unrevoked.holds(Uuid::now_v7(), (1, 10)), "another token");
    }

    #[test]
    fn the_memory_is_bounded() {
        let unrevoked = Unrevoked::default();
        for _ in 0..=MAX_REMEMBERED {
            unrevoked.remember(Uuid::now_v7(), (1, 1));
        }
        assert!(unrevoked.len() <= MAX_REMEMBERED);
        assert!(!unrevoked.is_empty());
    }
}
