//! The listener task: turns commit notifications, from this process and every other, into
//! head-watch wake-ups.

use super::{advance, CHANNEL};
use crate::{Position, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::sync::watch;

/// How the listener's connection shows in `pg_stat_activity`.
pub(super) const APPLICATION: &str = "kring-store listener";
/// The first and the longest pause before listening again after a failure.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// A listening connection and the one-connection pool it reconnects from.
pub(super) struct Listening {
    pool: PgPool,
    listener: PgListener,
}

impl Listening {
    /// Connects and starts listening on [`CHANNEL`].
    pub(super) async fn start(options: &PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.clone().application_name(APPLICATION))
            .await?;
        let listener = listen(&pool).await?;
        Ok(Self { pool, listener })
    }

    /// Follows notifications for as long as the store lives, listening again after any failure.
    pub(super) async fn follow(self, head: watch::Sender<Position>) {
        let Self { pool, mut listener } = self;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse::<Position>() {
                    Ok(position) => advance(&head, position),
                    Err(_) => wake(&head),
                },
                // The connection dropped and sqlx listened again on a new one: whatever
                // committed in between went unannounced, so subscribers should look.
                Ok(None) => wake(&head),
                Err(_) => {
                    // Give the pool its one connection back before asking for a new one.
                    drop(listener);
                    listener = relisten(&pool).await;
                    wake(&head);
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Listens again, pausing longer after each failure; meanwhile subscribers fall back on
/// their safety poll.
async fn relisten(pool: &PgPool) -> PgListener {
    let (mut pause, longest) = RETRY_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        if let Ok(listener) = listen(pool).await {
            return listener;
        }
        pause = (pause * 2).min(longest);
    }
}

/// Wakes subscribers without moving the head: they read the log and see for themselves.
fn wake(head: &watch::Sender<Position>) {
    head.send_modify(|_| {});
}
