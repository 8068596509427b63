//! The write side: recorded reads, revoked tokens and content removals.

use super::{subject_kind, NAME};
use crate::bulk::Cell;
use crate::db::{micros, to_i64};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::access::AccessEvent;
use kring_domain::post::{MediaRemoved, PostEvent, PostRemoved};
use kring_domain::{Actor, Event};

/// The projection.
#[derive(Debug, Default)]
pub struct AccessLogProjection;

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const INSERT: &str = include_str!("sql/insert.sql");

const REVOKE: &str = include_str!("sql/revoke.sql");

const REMOVED: &str = include_str!("sql/removed.sql");

#[async_trait]
impl Projection for AccessLogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["access_log", "access_revoked_tokens", "content_removals"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let a = match e.event {
            Event::Access(AccessEvent::AccessLogged(a)) => a,
            Event::Access(AccessEvent::TokenRevoked(r)) => {
                tx.execute(
                    &t.sql(REVOKE),
                    vec![
                        Cell::from(r.jti.to_string()),
                        Cell::from(to_i64(e.recorded.position)),
                        Cell::from(micros(r.at)),
                    ],
                )
                .await?;
                return Ok(());
            }
            Event::Post(
                PostEvent::PostRemoved(PostRemoved { post_id, by, .. })
                | PostEvent::MediaRemoved(MediaRemoved { post_id, by, .. }),
            ) => {
                if let Actor::Person(remover) = by {
                    tx.execute(
                        &t.sql(REMOVED),
                        vec![
                            Cell::from(to_i64(e.recorded.position)),
                            Cell::from(remover.to_string()),
                            Cell::from(post_id.to_string()),
                        ],
                    )
                    .await?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let (accessor_kind, accessor_id) = actor_parts(a.accessor);
        tx.execute(
            &t.sql(INSERT),
            vec![
                Cell::from(to_i64(e.recorded.position)),
                Cell::from(e.recorded.event_id.to_string()),
                Cell::from(subject_kind(&a.subject)),
                Cell::from(a.subject.uuid().to_string()),
                Cell::from(accessor_kind),
                Cell::from(accessor_id),
                Cell::from(a.reason.describe(&a.subject)),
                Cell::from(micros(a.at)),
            ],
        )
        .await?;
        Ok(())
    }
}

/// The stored kind and id of an accessor; the id is empty unless it is a person.
fn actor_parts(actor: Actor) -> (&'static str, String) {
    match actor {
        Actor::Person(p) => ("person", p.to_string()),
        Actor::Operator => ("operator", String::new()),
        Actor::System => ("system", String::new()),
    }
}
