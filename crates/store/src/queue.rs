//! The queue in front of a group-committing writer (SQLite, PostgreSQL): appends are validated
//! and queued; the writer takes them in groups and answers each with its own outcome.

use crate::plan::{self, AppendRequest};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, StoreError};
use kring_domain::StreamName;
use tokio::sync::{mpsc, oneshot};

/// One queued append and where its outcome goes.
pub(crate) struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The appenders' end of the queue.
#[derive(Clone)]
pub(crate) struct Appender(mpsc::Sender<Job>);

/// A queue holding up to `capacity` appends.
pub(crate) fn channel(capacity: usize) -> (Appender, mpsc::Receiver<Job>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Appender(tx), rx)
}

impl Appender {
    /// Validates, queues and waits for the writer's answer.
    pub(crate) async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut request = AppendRequest {
            stream: *stream,
            expected,
            events,
        };
        plan::validate(&mut request)?;
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// How often the writer yields to let more appends queue before it commits. Appenders that
/// were just answered are about to send their next append; waiting for them lets one commit
/// (one fsync) serve many appends.
const GATHER_YIELDS: usize = 4;

/// The next group of at most `max` appends, waiting for the first; `None` when every
/// appender is gone. The replies are in the order of the requests.
pub(crate) async fn next_group(
    queue: &mut mpsc::Receiver<Job>,
    max: usize,
) -> Option<(
    Vec<AppendRequest>,
    Vec<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
)> {
    let first = queue.recv().await?;
    let mut jobs = vec![first];
    let mut idle_rounds = 0;
    while jobs.len() < max && idle_rounds < GATHER_YIELDS {
        match queue.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => {
                idle_rounds += 1;
                tokio::task::yield_now().await;
            }
        }
    }
    Some(jobs.into_iter().map(|j| (j.request, j.reply)).unzip())
}
