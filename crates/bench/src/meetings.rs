//! Meeting bookings at 19:00: a school opens its parent–teacher conversations and every
//! guardian books at the same moment, over HTTP against an in-process `serve`.
//!
//! The school (one class per 30 children, one guardian per child, every guardian invited,
//! accepted and approved over HTTP, as in [`crate::delivery`]) has a teacher per class who opens
//! a round for the class: ten-minute slots, a fifth more than the class has children. Then every
//! guardian starts at once (a barrier), as a parent's app does: reads the round
//! (`GET /v1/meeting-rounds/{id}`), picks one of the first three free slots (people want the
//! early ones, so they collide) and books it (`POST …/bookings`); on `409` (the slot was taken
//! meanwhile) reads the round again and picks again, until booked.
//!
//! Measured: bookings per second from the start until the last guardian has booked; the p50 and
//! p99 of a booking request (every `POST`, the refused ones included) and of a guardian's time
//! from the start to booked; how many guardians got a conflict and how many conflicts there
//! were. Afterwards every round is read as its teacher: each child booked once, no slot twice.

use crate::delivery::{id, Client};
use crate::report::Row;
use crate::stats::Latencies;
use futures::StreamExt;
use kring_api::server::{start, ServeOptions};
use kring_api::Caller;
use kring_projections::Config;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Children (and guardians) to a class.
const CLASS: usize = 30;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Booked {
    /// Guardians who booked (one each).
    pub guardians: usize,
    /// Rounds (one per class).
    pub rounds: usize,
    /// From the start until the last guardian had booked.
    pub elapsed: Duration,
    /// Every booking request's latency.
    pub requests: Latencies,
    /// Each guardian's time from the start to booked.
    pub to_booked: Latencies,
    /// Guardians who got at least one `409`.
    pub conflicted: usize,
    /// `409` answers in all.
    pub conflicts: usize,
    /// `503` answers (the server asked to try again later), each retried.
    pub unavailable: usize,
}

impl Booked {
    /// The report's row.
    #[must_use]
    pub fn row(&self, backend: &str) -> Row {
        let secs = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let per_sec = self.guardians as f64 / secs.max(f64::EPSILON);
        Row::new(
            format!(
                "meetings: {} guardians book at once, {} rounds",
                self.guardians, self.rounds
            ),
            backend,
        )
        .figure("", per_sec, "bookings/s")
        .figure("request p50", self.requests.percentile_ms(50.0), "ms")
        .figure("request p99", self.requests.percentile_ms(99.0), "ms")
        .figure("booked p99", self.to_booked.percentile_ms(99.0), "ms")
        .note(format!(
            "all booked in {secs:.2} s; {} guardians got a conflict ({} 409s in {} requests); {} 503s retried",
            self.conflicted,
            self.conflicts,
            self.requests.len(),
            self.unavailable
        ))
    }
}

/// One guardian's part: the round, their child, their token.
struct Family {
    round: Arc<String>,
    child: String,
    token: String,
}

/// What one guardian saw.
struct Outcome {
    requests: Vec<Duration>,
    to_booked: Duration,
    conflicts: usize,
    unavailable: usize,
}

/// Reads the round and books one of the first three free slots until one is booked.
async fn book(c: &Client, f: &Family, start: Instant, seed: u64) -> Result<Outcome, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let round = f.round.as_str();
    let mut out = Outcome {
        requests: Vec::new(),
        to_booked: Duration::ZERO,
        conflicts: 0,
        unavailable: 0,
    };
    for _ in 0..200 {
        let view = c
            .call(
                reqwest::Method::GET,
                &format!("/v1/meeting-rounds/{round}"),
                Some(&f.token),
                Value::Null,
            )
            .await?;
        let free: Vec<u64> = view["slots"]
            .as_array()
            .ok_or_else(|| format!("no slots in {view}"))?
            .iter()
            .filter(|s| s["state"] == "free")
            .filter_map(|s| s["slot_id"].as_u64())
            .take(3)
            .collect();
        if free.is_empty() {
            return Err(format!("round {round} has no free slot left"));
        }
        let slot = free[rng.usize(..free.len())];
        let sent = Instant::now();
        let res = c
            .http
            .post(format!("{}/v1/meeting-rounds/{round}/bookings", c.url))
            .bearer_auth(&f.token)
            .json(&json!({"slot_id": slot, "child_id": f.child}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let retry = res.headers().get(reqwest::header::RETRY_AFTER).cloned();
        let text = res.text().await.map_err(|e| e.to_string())?;
        out.requests.push(sent.elapsed());
        match status.as_u16() {
            201 => {
                out.to_booked = start.elapsed();
                return Ok(out);
            }
            409 => out.conflicts += 1,
            503 => {
                out.unavailable += 1;
                tokio::time::sleep(crate::delivery::retry_after(retry.as_ref())).await;
            }
            _ => return Err(format!("booking: {status}: {text}")),
        }
    }
    Err("200 attempts without a booking".into())
}

/// Runs the scenario for `guardians` on a fresh installation (`database_url`: PostgreSQL, else
/// SQLite files).
///
/// # Errors
/// Any step failing, or a round that does not hold each child once afterwards.
#[allow(clippy::too_many_lines)]
pub async fn measure(guardians: usize, database_url: Option<String>) -> Result<Booked, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let options = ServeOptions::new(Config {
        data_dir: dir.path().to_owned(),
        database_url,
        eventstore_url: None,
    })
    .without_rate_limits();
    let running = start(options).await.map_err(|e| e.to_string())?;
    let token = |c: Caller| {
        running
            .state
            .auth
            .mint(c, chrono::Duration::hours(2))
            .map_err(|e| e.explain().to_owned())
    };
    let person = |v: &Value, field: &str| -> Result<Caller, String> {
        Ok(Caller::Person(
            id(v, field)?.parse().map_err(|e| format!("{e}"))?,
        ))
    };
    let c = Client {
        http: reqwest::Client::new(),
        url: running.url(),
    };
    let op = token(Caller::Operator)?;
    let school = c
        .post(
            "/v1/schools",
            Some(&op),
            json!({"name": "De Regenboog", "brin": "12AB"}),
        )
        .await?;
    let school_id = id(&school, "school_id")?;
    let staff = |name: &str, role: &str| json!({"display_name": name, "email": format!("{}@school.example", name.to_lowercase()), "role": role});
    let director = c
        .post(
            &format!("/v1/schools/{school_id}/staff"),
            Some(&op),
            staff("Directeur", "director"),
        )
        .await?;
    let dir_token = token(person(&director, "person_id")?)?;
    let classes = guardians.div_ceil(CLASS);
    // Per class: its group, its teacher's id and token.
    let mut groups = Vec::new();
    for g in 0..classes {
        let group = id(
            &c.post(
                &format!("/v1/schools/{school_id}/groups"),
                Some(&dir_token),
                json!({"name": format!("Groep {g}")}),
            )
            .await?,
            "group_id",
        )?;
        let teacher = c
            .post(
                &format!("/v1/schools/{school_id}/staff"),
                Some(&dir_token),
                staff(&format!("Juf{g}"), "teacher"),
            )
            .await?;
        let teacher_id = id(&teacher, "person_id")?;
        c.post(
            &format!("/v1/groups/{group}/staff"),
            Some(&dir_token),
            json!({"person_id": teacher_id}),
        )
        .await?;
        groups.push((group, teacher_id, token(person(&teacher, "person_id")?)?));
    }
    eprintln!(
        "meetings: a school of {classes} classes; enrolling and inviting {guardians} families"
    );
    let setup = Instant::now();
    let families: Vec<Result<(usize, String, String), String>> =
        futures::stream::iter(0..guardians)
            .map(|i| {
                let (c, groups, dir_token, token) = (&c, &groups, &dir_token, &token);
                async move {
                    let class = i / CLASS;
                    let group = &groups[class].0;
                    let child = id(
                        &c.post(
                            &format!("/v1/groups/{group}/children"),
                            Some(dir_token),
                            json!({"first_name": format!("Kind{i}"), "last_initial": "K"}),
                        )
                        .await?,
                        "child_id",
                    )?;
                    let sent = c
                        .post(
                            "/v1/invitations",
                            Some(dir_token),
                            json!({"child_id": child, "email": format!("ouder{i}@home.example")}),
                        )
                        .await?;
                    let accepted = c
                .post(
                    "/v1/invitations/accept",
                    None,
                    json!({"code": id(&sent, "code")?, "display_name": format!("Ouder {i}")}),
                )
                .await?;
                    c.post(
                        &format!("/v1/invitations/{}/approve", id(&sent, "invitation_id")?),
                        Some(dir_token),
                        json!({}),
                    )
                    .await?;
                    Ok((class, child, token(person(&accepted, "person_id")?)?))
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let families = families.into_iter().collect::<Result<Vec<_>, String>>()?;
    eprintln!(
        "meetings: {guardians} families in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    // Each teacher opens a round for the class: ten-minute slots two weeks from now, a fifth
    // more than the class has children.
    let day = (chrono::Utc::now() + chrono::Duration::days(14))
        .date_naive()
        .and_hms_opt(13, 0, 0)
        .ok_or("no 13:00")?
        .and_utc();
    let mut rounds = Vec::new();
    for (class, (group, teacher_id, teacher_token)) in groups.iter().enumerate() {
        let children = families.iter().filter(|f| f.0 == class).count();
        let slots: Vec<Value> = (0..i64::try_from(children + children.div_ceil(5)).unwrap_or(0))
            .map(|n| {
                json!({
                    "starts_at": day + chrono::Duration::minutes(10 * n),
                    "ends_at": day + chrono::Duration::minutes(10 * n + 10),
                    "staff": [teacher_id],
                })
            })
            .collect();
        let round = c
            .post(
                &format!("/v1/groups/{group}/meeting-rounds"),
                Some(teacher_token),
                json!({
                    "title": "Tienminutengesprekken",
                    "per": "child",
                    "slots": slots,
                    "place": {"kind": "room", "name": format!("Lokaal {class}")},
                    "book_until": chrono::Utc::now() + chrono::Duration::days(7),
                }),
            )
            .await?;
        rounds.push(Arc::new(id(&round, "round_id")?));
    }
    let families: Vec<Family> = families
        .into_iter()
        .map(|(class, child, token)| Family {
            round: Arc::clone(&rounds[class]),
            child,
            token,
        })
        .collect();
    eprintln!(
        "meetings: {} rounds open; {guardians} guardians book at once",
        rounds.len()
    );
    // 19:00: everyone at once.
    let c = Arc::new(c);
    let families = Arc::new(families);
    let barrier = Arc::new(tokio::sync::Barrier::new(guardians + 1));
    let tasks: Vec<_> = (0..guardians)
        .map(|i| {
            let (c, families, barrier) =
                (Arc::clone(&c), Arc::clone(&families), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                book(&c, &families[i], start, i as u64).await
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut to_booked = Vec::new();
    let (mut conflicted, mut conflicts, mut unavailable) = (0, 0, 0);
    for task in tasks {
        let outcome = task.await.map_err(|e| e.to_string())??;
        requests.extend(outcome.requests);
        to_booked.push(outcome.to_booked);
        conflicted += usize::from(outcome.conflicts > 0);
        conflicts += outcome.conflicts;
        unavailable += outcome.unavailable;
    }
    let elapsed = started.elapsed();
    // Every child booked once, no slot twice: read as each round's teacher.
    let mut booked_children = BTreeSet::new();
    for (round, (_, _, teacher_token)) in rounds.iter().zip(&groups) {
        let view = c
            .call(
                reqwest::Method::GET,
                &format!("/v1/meeting-rounds/{round}"),
                Some(teacher_token),
                Value::Null,
            )
            .await?;
        let mut slots = BTreeSet::new();
        for s in view["slots"].as_array().ok_or("no slots")? {
            if s["booking"].is_null() {
                continue;
            }
            if !slots.insert(s["slot_id"].to_string()) {
                return Err(format!("round {round}: a slot booked twice"));
            }
            for child in s["booking"]["child_ids"].as_array().ok_or("no children")? {
                if !booked_children.insert(child.to_string()) {
                    return Err(format!("round {round}: child {child} booked twice"));
                }
            }
        }
    }
    if booked_children.len() != guardians {
        return Err(format!(
            "{} children booked of {guardians}",
            booked_children.len()
        ));
    }
    running.stop();
    Ok(Booked {
        guardians,
        rounds: rounds.len(),
        elapsed,
        requests: Latencies::new(requests),
        to_booked: Latencies::new(to_booked),
        conflicted,
        conflicts,
        unavailable,
    })
}
