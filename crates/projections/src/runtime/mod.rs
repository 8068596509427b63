//! The projector runtime.
//!
//! - One read of the global log feeds every projection. Each batch is applied to every
//!   projection in one read-model transaction (a `Unit`) that also advances their checkpoints
//!   (exactly once). A checkpoint update is conditional on the position it started from, so even
//!   two projectors racing on one database cannot apply a batch twice. Catching up and
//!   rebuilding put several batches in one transaction. When a projection fails, the
//!   transaction is rolled back and the same events applied again with a savepoint for each
//!   projection, so that the failing one stops alone.
//! - Catch up in large batches, then follow live, woken by the store's subscription.
//! - A projection that cannot handle an event stops at it — the events before it committed,
//!   that one named by position, stream and type — and the others keep running.
//! - A rebuild fills a fresh generation of tables from position 0 while the current one keeps
//!   serving, then switches the views to it in one transaction.
//! - On PostgreSQL one process at a time runs the projectors (a session advisory lock); another
//!   waits and takes over when the first dies. A leader whose lock's session ends (a database
//!   restart) notices within a second, stops applying and waits to lead again.

mod checkpoints;
mod generations;
mod projector;
mod slot;
mod status;
mod unit;

pub use checkpoints::Checkpoints;
pub use projector::Projector;
pub use status::{ProjectionStatus, StatusBoard};
pub use unit::UNIT_EVENTS;

use crate::error::ProjectionError;

/// Events read from the log per batch when following it live: small enough that a batch's
/// transaction keeps the projection lag low when the projector falls a little behind.
pub const BATCH: usize = 2000;
/// Events read from the log per batch when catching up and rebuilding. Larger batches mean
/// fewer statements and fewer rewrites of the same rows (a school's roster state, a child's
/// consents), but every event of a batch is held decoded, and buffered by the projections that
/// need it. 8,000 is as fast as larger batches and keeps a rebuild under its 256 MiB budget
/// with the pipelined writer (`docs/decisions/0007-pipelined-projector-writes.md`). Several
/// batches share a transaction ([`UNIT_EVENTS`]).
pub const CATCH_UP_BATCH: usize = 8_000;

/// Whether a failure is passing (retrying the same batch later may succeed) rather than
/// something about the event: lost connections, timeouts, lock contention, serialization
/// failures, a database shutting down or out of resources, a full disk.
#[must_use]
pub fn is_transient(e: &ProjectionError) -> bool {
    use kring_store::StoreError as S;
    let sql = match e {
        ProjectionError::Database(e)
        | ProjectionError::Vault(kring_store::vault::VaultError::Database(e)) => e,
        ProjectionError::Store(S::Backend(_) | S::Unavailable(_) | S::StorageFull(_))
        | ProjectionError::RolledBack(_) => return true,
        _ => return false,
    };
    // Out of reach or out of space (a full disk under SQLite's files included): the same
    // events apply once it passes.
    if kring_store::outage(sql).is_some() {
        return true;
    }
    match sql {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite: BUSY (5) and LOCKED (6) with their extended codes (e.g. 517).
            // PostgreSQL: classes 08 connection, 40 rollback (serialization, deadlock),
            // 53 insufficient resources, 57 operator intervention.
            if code.len() == 5 {
                ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c))
            } else {
                code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            }
        }
        _ => false,
    }
}
