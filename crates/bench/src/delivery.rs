//! Delivery: a post to a whole school fanned out to its guardians' outbox and e-mailed by the
//! delivery worker of an in-process `serve` to an SMTP server on a local port.
//!
//! The school (one class per 30 children, one guardian per child, every guardian invited,
//! accepted and approved over HTTP) sets `email` as its default channel for posts (invitation
//! mails are told apart by their idempotency key). Then the director posts to the whole school
//! once, and the clock runs from the post's answer until the sink has taken one mail per
//! guardian: notifications per second, and the time to the last delivery.

use crate::report::Row;
use futures::StreamExt;
use kring_api::server::{start, ServeOptions};
use kring_api::Caller;
use kring_projections::Config;
use kring_testkit::smtp::SmtpSink;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// People told (the guardians and the teacher).
    pub guardians: usize,
    /// From the post's answer to the last mail taken.
    pub last_delivery: Duration,
}

impl Delivered {
    /// The report's row.
    #[must_use]
    pub fn row(&self, backend: &str) -> Row {
        let secs = self.last_delivery.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let per_sec = self.guardians as f64 / secs.max(f64::EPSILON);
        Row::new(
            format!("delivery: a post e-mailed to {} people", self.guardians),
            backend,
        )
        .figure("", per_sec, "notifications/s")
        .figure("last delivered after", secs, "s")
        .note("in-process serve, the worker's 8 sends at a time, an SMTP sink on loopback")
    }
}

/// An HTTP client of the in-process server (the meetings scenario uses it too).
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
}

impl Client {
    /// Sends a request, again on `409 concurrency_conflict` (the roster's stream takes one
    /// change at a time: concurrent enrolments retry, as the API asks).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, String> {
        for _ in 0..50 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.url))
                .json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.map_err(|e| format!("{path}: {e}"))?;
            let status = res.status();
            let retry_header = res.headers().get(reqwest::header::RETRY_AFTER).cloned();
            let text = res.text().await.map_err(|e| e.to_string())?;
            if status == reqwest::StatusCode::CONFLICT && text.contains("concurrency_conflict") {
                continue;
            }
            // Overloaded: wait as the answer asks and try again, as an app does.
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(retry_after(retry_header.as_ref())).await;
                continue;
            }
            if !status.is_success() {
                return Err(format!("{path}: {status}: {text}"));
            }
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        Err(format!("{path}: conflicts every time"))
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, token, body).await
    }
}

/// How long a `503` asks the client to wait (`Retry-After` in seconds), 100 ms when it does
/// not say, at most 5 s.
pub(crate) fn retry_after(header: Option<&reqwest::header::HeaderValue>) -> Duration {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_millis(100), |s| {
            Duration::from_secs(s.min(5))
        })
}

pub(crate) fn id(v: &Value, field: &str) -> Result<String, String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {field} in {v}"))
}

/// Runs the scenario for `guardians` on a fresh installation (`database_url`: PostgreSQL, else
/// SQLite files).
///
/// # Errors
/// Any step failing.
pub async fn measure(guardians: usize, database_url: Option<String>) -> Result<Delivered, String> {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut options = ServeOptions::new(Config {
        data_dir: dir.path().to_owned(),
        database_url,
        eventstore_url: None,
    })
    .without_rate_limits();
    options.delivery.run_worker = true;
    options.delivery.smtp_url = Some(sink.url());
    options.delivery.mail_from = Some("Kring <kring@school.example>".into());
    options.delivery.poll_interval = Duration::from_millis(50);
    options.delivery.batch = 1000;
    let running = start(options).await.map_err(|e| e.to_string())?;
    let token = |c: Caller| {
        running
            .state
            .auth
            .mint(c, chrono::Duration::hours(2))
            .map_err(|e| e.explain().to_owned())
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
    let school_group = id(&school, "school_group_id")?;
    let staff = |name: &str, role: &str| json!({"display_name": name, "email": format!("{}@school.example", name.to_lowercase()), "role": role});
    let director = id(
        &c.post(
            &format!("/v1/schools/{school_id}/staff"),
            Some(&op),
            staff("Directeur", "director"),
        )
        .await?,
        "person_id",
    )?;
    let dir_token = token(Caller::Person(
        director.parse().map_err(|e| format!("{e}"))?,
    ))?;
    let teacher = id(
        &c.post(
            &format!("/v1/schools/{school_id}/staff"),
            Some(&dir_token),
            staff("Juf", "teacher"),
        )
        .await?,
        "person_id",
    )?;
    let teacher_token = token(Caller::Person(teacher.parse().map_err(|e| format!("{e}"))?))?;
    c.call(
        reqwest::Method::PATCH,
        &format!("/v1/schools/{school_id}/settings"),
        Some(&dir_token),
        json!({"default_channels": {"post": "email", "invitation_approved": "off"}}),
    )
    .await?;
    c.post(
        &format!("/v1/groups/{school_group}/staff"),
        Some(&dir_token),
        json!({"person_id": teacher}),
    )
    .await?;
    let classes = guardians.div_ceil(30);
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
        c.post(
            &format!("/v1/groups/{group}/staff"),
            Some(&dir_token),
            json!({"person_id": teacher}),
        )
        .await?;
        groups.push(group);
    }
    eprintln!(
        "delivery: a school of {classes} classes; enrolling and inviting {guardians} families"
    );
    let setup = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..guardians)
        .map(|i| {
            let (c, groups, teacher_token) = (&c, &groups, &teacher_token);
            async move {
                let group = &groups[i % groups.len()];
                let child = c
                    .post(
                        &format!("/v1/groups/{group}/children"),
                        Some(teacher_token),
                        json!({"first_name": format!("Kind{i}"), "last_initial": "K"}),
                    )
                    .await?;
                let sent = c
                    .post(
                        "/v1/invitations",
                        Some(teacher_token),
                        json!({"child_id": id(&child, "child_id")?, "email": format!("ouder{i}@home.example")}),
                    )
                    .await?;
                c.post(
                    "/v1/invitations/accept",
                    None,
                    json!({"code": id(&sent, "code")?, "display_name": format!("Ouder {i}")}),
                )
                .await?;
                c.post(
                    &format!("/v1/invitations/{}/approve", id(&sent, "invitation_id")?),
                    Some(teacher_token),
                    json!({}),
                )
                .await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    eprintln!(
        "delivery: {guardians} families in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let post_mails = |sink: &SmtpSink| {
        sink.mails()
            .iter()
            .filter(|m| !m.key().starts_with("invitation:"))
            .count()
    };
    // Every guardian, and the school's teacher (staff are told of a post too).
    let told = guardians + 1;
    let posted = Instant::now();
    c.post(
        &format!("/v1/groups/{school_group}/posts"),
        Some(&dir_token),
        json!({"body": "Morgen is de school dicht.", "media": []}),
    )
    .await?;
    while post_mails(&sink) < told {
        if posted.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {} of {told} mails after ten minutes",
                post_mails(&sink)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last_delivery = posted.elapsed();
    if post_mails(&sink) != told {
        return Err(format!(
            "{} post mails for {told} people",
            post_mails(&sink)
        ));
    }
    running.stop();
    Ok(Delivered {
        guardians: told,
        last_delivery,
    })
}
