//! Deliveries, recorded by the delivery worker in a table of their own (kept by a rebuild).

use super::NotificationId;
use crate::db::{micros, Backend, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use sqlx::{Acquire, Executor};

/// Where the delivery worker records deliveries: outside the projection's generation tables, so
/// that a rebuild keeps them.
const DELIVERY_TABLE: &str = include_str!("sql/delivery_table.sql");
const DELIVERY_LOCK: &str = include_str!("sql/delivery_lock.sql");
const MARK_DELIVERED: &str = include_str!("sql/mark_delivered.sql");

/// Creates the table of deliveries if it does not exist yet. It lives outside the projection's
/// generations, so a rebuild keeps it. Call once at start-up wherever [`due`], [`held`],
/// [`notification`] or [`mark_delivered`] are used (the API and the delivery worker); safe to
/// call from several processes at once.
///
/// [`due`]: super::due
/// [`held`]: super::held
/// [`notification`]: super::notification
///
/// # Errors
/// Database failures.
pub async fn ensure_delivery_table(db: &ReadDb) -> Result<(), ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    if db.backend() == Backend::Postgres {
        // Concurrent `CREATE TABLE IF NOT EXISTS` can collide on PostgreSQL: serialise them.
        let mut tx = conn.begin().await?;
        tx.execute(DELIVERY_LOCK).await?;
        tx.execute(DELIVERY_TABLE).await?;
        tx.commit().await?;
    } else {
        conn.execute(DELIVERY_TABLE).await?;
    }
    Ok(())
}

/// Records that the notifications `ids` were delivered at `at`, in one transaction; returns how
/// many were not recorded as delivered before (marking twice changes nothing).
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn mark_delivered(
    db: &ReadDb,
    ids: &[NotificationId],
    at: DateTime<Utc>,
) -> Result<u64, ProjectionError> {
    let mut tx = db.pool().begin().await?;
    let mut marked = 0;
    for id in ids {
        marked += sqlx::query(MARK_DELIVERED)
            .bind(id.to_string())
            .bind(micros(at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(marked)
}
