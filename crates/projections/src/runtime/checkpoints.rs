//! Read-model positions (checkpoints): how far a projection has got, and waiting for it.

use super::status::StatusBoard;
use crate::db::{to_u64, ReadDb};
use crate::error::ProjectionError;
use kring_store::Position;
use std::sync::Arc;
use std::time::Duration;

const POSITION: &str = include_str!("sql/position.sql");

/// Read-your-writes: the position a projection has reached, and a bounded wait for one.
#[derive(Clone)]
pub struct Checkpoints {
    db: ReadDb,
    board: Option<Arc<StatusBoard>>,
}

impl Checkpoints {
    /// Checkpoints read from `db`; with the in-process projectors' `board`, waits wake at once.
    #[must_use]
    pub const fn new(db: ReadDb, board: Option<Arc<StatusBoard>>) -> Self {
        Self { db, board }
    }

    /// The position projection `name` has reached.
    ///
    /// # Errors
    /// An unknown projection; database failures.
    pub async fn position(&self, name: &str) -> Result<Position, ProjectionError> {
        let position: Option<i64> = sqlx::query_scalar(POSITION)
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        to_u64(position.ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))?)
    }

    /// Whether projection `name` has applied everything up to `position`.
    ///
    /// # Errors
    /// As [`Checkpoints::position`].
    pub async fn has_reached(
        &self,
        name: &str,
        position: Position,
    ) -> Result<bool, ProjectionError> {
        Ok(self.position(name).await? >= position)
    }

    /// Once the read model has `position`, waits (at most until `deadline`) for this process's
    /// projector to have told its board so, which it does right after its commit: what trusts
    /// the board ([`StatusBoard::at`]) then agrees with an answer given after this wait.
    async fn settle(&self, name: &str, position: Position, deadline: tokio::time::Instant) {
        let Some(board) = self.board.as_ref().filter(|b| b.leading()) else {
            return;
        };
        let Some(mut watch) = board.watch(name) else {
            return;
        };
        while *watch.borrow_and_update() < position {
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Waits up to `timeout` for projection `name` to reach `position`.
    ///
    /// # Errors
    /// [`ProjectionError::NotCaughtUp`] when the time runs out.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = self.board.as_ref().and_then(|b| b.watch(name));
        loop {
            let reached = self.position(name).await?;
            if reached >= position {
                self.settle(name, position, deadline).await;
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ProjectionError::NotCaughtUp {
                    projection: name.to_owned(),
                    position,
                    reached,
                });
            }
            // Woken by the in-process projector, or poll (another process projects).
            let nap = (deadline - now).min(Duration::from_millis(50));
            match watch.as_mut() {
                Some(w) => {
                    let _ = tokio::time::timeout(nap, w.changed()).await;
                }
                None => tokio::time::sleep(nap).await,
            }
        }
    }
}
