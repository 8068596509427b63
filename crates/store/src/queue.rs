//! The queue in front of a group-committing writer (SQLite, PostgreSQL): appends are validated
//! and queued; the writer takes them in groups and answers each with its own outcome.
//!
//! A job is one append, or many ([`Appender::append_many`], a bulk import's batch): the writer
//! plans a job's appends in their order, each with its own outcome, and one reply carries them
//! all back, so a batch of appends costs one hand-off to the writer and one back.

use crate::plan::{self, AppendRequest};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, StoreError};
use kring_domain::StreamName;
use tokio::sync::{mpsc, oneshot};

type Outcomes = Vec<Result<AppendOutcome, StoreError>>;

/// One queued job: appends, and where their outcomes go.
pub(crate) struct Job {
    requests: Vec<AppendRequest>,
    reply: oneshot::Sender<Outcomes>,
}

/// The appenders' end of the queue.
#[derive(Clone)]
pub(crate) struct Appender {
    jobs: mpsc::Sender<Job>,
    /// The most appends one job carries (the writer's group size).
    max: usize,
}

/// A queue holding up to `capacity` jobs, each of at most `max` appends.
pub(crate) fn channel(capacity: usize, max: usize) -> (Appender, mpsc::Receiver<Job>) {
    let (jobs, rx) = mpsc::channel(capacity);
    (Appender { jobs, max }, rx)
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
        let answer = self.queue(vec![request]).await.ok_or(StoreError::Closed)?;
        answer
            .await
            .ok()
            .and_then(|mut outcomes| outcomes.pop())
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Queues `requests` as one job; the writer's answer to come, `None` when the writer is gone.
    async fn queue(&self, requests: Vec<AppendRequest>) -> Option<oneshot::Receiver<Outcomes>> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { requests, reply }).await.ok()?;
        Some(answer)
    }

    /// Validates each append, queues the valid ones in order (as jobs of at most the writer's
    /// group size, queued one after the other) and waits for their outcomes; one outcome per
    /// request, in order. An invalid append is refused on its own.
    pub(crate) async fn append_many(&self, requests: Vec<AppendRequest>) -> Outcomes {
        let mut outcomes: Vec<Option<Result<AppendOutcome, StoreError>>> =
            Vec::with_capacity(requests.len());
        let mut valid = Vec::with_capacity(requests.len());
        for mut request in requests {
            match plan::validate(&mut request) {
                Ok(()) => {
                    outcomes.push(None);
                    valid.push(request);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        // Every job is queued before the first answer is awaited: the writer may take them
        // into one group, and their order in the queue is the order asked.
        let mut answers = Vec::new();
        let mut valid = valid.into_iter().peekable();
        while valid.peek().is_some() {
            let requests: Vec<AppendRequest> = valid.by_ref().take(self.max).collect();
            let n = requests.len();
            answers.push((n, self.queue(requests).await));
        }
        let mut answered = Vec::with_capacity(outcomes.len());
        for (n, answer) in answers {
            let got = match answer {
                Some(answer) => answer.await.ok(),
                None => None,
            };
            match got {
                Some(results) if results.len() == n => answered.extend(results),
                _ => answered.extend((0..n).map(|_| Err(StoreError::Closed))),
            }
        }
        let mut answered = answered.into_iter();
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| answered.next().unwrap_or(Err(StoreError::Closed))))
            .collect()
    }
}

/// The repliers of a group: which jobs its appends came from, in order.
pub(crate) struct Replies(Vec<(usize, oneshot::Sender<Outcomes>)>);

impl Replies {
    /// Answers every job with its share of `outcomes` (one per append of the group, in order).
    pub(crate) fn send(self, outcomes: Outcomes) {
        let mut outcomes = outcomes.into_iter();
        for (n, reply) in self.0 {
            let _ = reply.send(outcomes.by_ref().take(n).collect());
        }
    }

    /// Answers every append of the group with `e` (nothing of the group was acknowledged).
    pub(crate) fn fail(self, e: &StoreError) {
        for (n, reply) in self.0 {
            let _ = reply.send((0..n).map(|_| Err(e.for_each_append())).collect());
        }
    }
}

/// How often the writer yields to let more appends queue before it commits. Appenders that
/// were just answered are about to send their next append; waiting for them lets one commit
/// (one fsync) serve many appends.
const GATHER_YIELDS: usize = 4;

/// The next group of appends, waiting for the first job; it takes jobs until they hold `max`
/// appends or none is queued. `None` when every appender is gone.
pub(crate) async fn next_group(
    queue: &mut mpsc::Receiver<Job>,
    max: usize,
) -> Option<(Vec<AppendRequest>, Replies)> {
    let first = queue.recv().await?;
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    let mut take = |job: Job, requests: &mut Vec<AppendRequest>| {
        replies.push((job.requests.len(), job.reply));
        requests.extend(job.requests);
    };
    take(first, &mut requests);
    let mut idle_rounds = 0;
    while requests.len() < max && idle_rounds < GATHER_YIELDS {
        match queue.try_recv() {
            Ok(job) => take(job, &mut requests),
            Err(_) => {
                idle_rounds += 1;
                tokio::task::yield_now().await;
            }
        }
    }
    Some((requests, Replies(replies)))
}
