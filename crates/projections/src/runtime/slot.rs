//! A projection as the projector runs it: its active generation of tables and its position.

use super::generations::active;
use crate::error::ProjectionError;
use crate::projection::{Projection, Tables};
use sqlx::AnyConnection;
use std::sync::Arc;

pub(super) struct Slot {
    pub(super) projection: Arc<dyn Projection>,
    pub(super) tables: Tables,
    pub(super) position: u64,
    pub(super) failed: bool,
    /// The active generation was made by another version of the read model (another
    /// [`Projection::fingerprint`]): never written to; [`Projector::run`](super::Projector::run) rebuilds it.
    pub(super) foreign: bool,
}

/// Why a slot whose active generation another version made does not go on.
fn foreign_failure(name: &str, generation: i64, fingerprint: Option<&str>, own: &str) -> String {
    format!(
        "projection {name} stopped: its active generation {generation} was made by another version of the read model (fingerprint {}, this process has {own}); it keeps serving unchanged until a projector of this version rebuilds it (on start, after taking the lead) or the version that made it runs again",
        fingerprint.unwrap_or("none"),
    )
}

impl Slot {
    /// Forgets what the projection buffered and takes its active generation and position from
    /// the database (another projector or a rebuild may have moved them). A generation made by
    /// another version of the read model (a process of that version rebuilt it) is never
    /// written to: the slot stops, and the reason is returned for the status board.
    pub(super) async fn reload(
        &mut self,
        conn: &mut AnyConnection,
    ) -> Result<Option<String>, ProjectionError> {
        self.projection.reset();
        let Some((generation, position, fingerprint)) =
            active(conn, self.projection.name()).await?
        else {
            return Ok(None);
        };
        Ok(self.adopt(generation, position, fingerprint.as_deref()))
    }

    /// A slot on the active `generation` of `projection`, at `position`, made by the code of
    /// `fingerprint`; with the reason it is stopped when another version made it.
    pub(super) fn open(
        projection: Arc<dyn Projection>,
        generation: i64,
        position: u64,
        fingerprint: Option<&str>,
    ) -> (Self, Option<String>) {
        let mut slot = Self {
            tables: Tables::new(projection.tables(), generation),
            projection,
            position,
            failed: false,
            foreign: false,
        };
        let failure = slot.adopt(generation, position, fingerprint);
        (slot, failure)
    }

    /// Takes `generation` at `position` as the active one. Made by another fingerprint, it is
    /// foreign: the slot stops (never writing to it) and the reason is returned.
    fn adopt(
        &mut self,
        generation: i64,
        position: u64,
        fingerprint: Option<&str>,
    ) -> Option<String> {
        if generation != self.tables.generation() {
            self.tables = Tables::new(self.projection.tables(), generation);
        }
        self.position = position;
        let own = self.projection.fingerprint();
        self.foreign = fingerprint != Some(own.as_str());
        if !self.foreign {
            return None;
        }
        self.failed = true;
        Some(foreign_failure(
            self.projection.name(),
            generation,
            fingerprint,
            &own,
        ))
    }
}
