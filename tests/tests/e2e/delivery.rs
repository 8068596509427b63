//! Delivery across a crash: the real `kring-api serve` e-mails invitations to an SMTP server on a
//! local port that takes its time over each mail, and is killed with SIGKILL while mails are in
//! flight. Started again on the same installation, it delivers every invitation: each
//! idempotency key reaches the SMTP server — at least once (a mail in flight at the kill may
//! come twice, as at-least-once allows), every copy of a key the same mail — and nothing else.

use crate::harness::{Server, Who};
use crate::school::School;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

use kring_testkit::smtp::{self, SmtpSink};

/// Invitations sent before the kill.
const INVITATIONS: usize = 40;

async fn kill_9_while_mailing(database_url: Option<String>, backend: &str) {
    let sink = SmtpSink::start().await;
    // Slow enough that the kill comes while mails are in flight (the worker sends 8 at a time).
    sink.slow(Duration::from_millis(100));
    let url = sink.url();
    let mut api = Server::start_with(
        database_url,
        &[
            "--smtp-url",
            &url,
            "--mail-from",
            "Kring <kring@school.example>",
            "--public-url",
            "https://kring.example",
            "--delivery-retry-base-ms",
            "50",
        ],
    )
    .await;
    let school = School::build(&api).await;
    let mut expected = BTreeMap::new();
    for _ in 0..INVITATIONS {
        let (invitation, code) = school.invite(&api, school.teacher, school.child).await;
        expected.insert(format!("invitation:{invitation}/email"), code);
    }
    sink.wait_for("a first mail", |m| !m.is_empty()).await;
    api.kill();
    let before = sink.mails().len();
    eprintln!("delivery: {backend}: {before} of {INVITATIONS} mails taken before kill -9");

    api.restart().await;
    api.ready().await;
    let mails = sink
        .wait_for("every invitation", |m| {
            let keys: std::collections::BTreeSet<String> = m.iter().map(smtp::Mail::key).collect();
            expected.keys().all(|k| keys.contains(k))
        })
        .await;
    let mut by_key: BTreeMap<String, Vec<&smtp::Mail>> = BTreeMap::new();
    for mail in &mails {
        by_key.entry(mail.key()).or_default().push(mail);
    }
    // Every invitation sent, by its key; nothing else (the school's own first invitation may be
    // mailed too, or not when it was accepted before the worker came to it).
    assert!(expected.keys().all(|k| by_key.contains_key(k)));
    assert!(by_key.len() <= expected.len() + 1, "{:?}", by_key.keys());
    assert!(by_key
        .keys()
        .all(|k| k.starts_with("invitation:") && k.ends_with("/email")));
    for (key, copies) in &by_key {
        let Some(code) = expected.get(key) else {
            continue;
        };
        for copy in copies {
            assert!(
                copy.body().contains(code.as_str()),
                "{key}: the mail holds its code"
            );
            assert_eq!(copy.header("Message-ID"), copies[0].header("Message-ID"));
        }
    }
    let repeats = mails.len() - by_key.len();
    eprintln!(
        "delivery: {backend}: all {INVITATIONS} invitations delivered after the restart; {repeats} sent again (the same key)"
    );
    // Recorded as delivered: no dead letters, and the operator sees none.
    let dead = api.get("/v1/operator/dead-letters", Who::Operator).await;
    assert_eq!(dead.expect(200)["dead_letters"], json!([]));
    // A later invitation still goes out, once.
    let (invitation, _) = school.invite(&api, school.teacher, school.child).await;
    let key = format!("invitation:{invitation}/email");
    sink.wait_for("the invitation after the restart", |m| {
        m.iter().any(|mail| mail.key() == key)
    })
    .await;
    api.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_mailing_delivers_every_invitation_by_its_key_on_sqlite() {
    kill_9_while_mailing(None, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_mailing_delivers_every_invitation_by_its_key_on_postgres() {
    let url = kring_testkit::fresh_postgres_database("e2e_delivery")
        .await
        .url()
        .to_owned();
    kill_9_while_mailing(Some(url), "postgres").await;
}
