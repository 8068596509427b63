//! Delivery over real parts, on SQLite and on PostgreSQL: an SMTP server and a Web Push
//! endpoint on local ports receive what the worker inside the server sends — the invitation
//! with its code, notifications encrypted for the device and signed with the installation's
//! VAPID key — retried after refusals, given up as dead letters the operator retries, and never
//! to an erased person or a subscription the push service said is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{school_server, sinks};
use kring_api::delivery::store::{self, JobState};
use kring_api::server::ServeOptions;
use kring_domain::{PersonId, StreamName};
use kring_store::EventStoreExt;
use school_server::{Api, School};
use serde_json::json;
use sinks::{Device, PushSink, SmtpSink};
use std::time::Duration;

kring_testkit::on_both_backends!(sqlite: |_| fixture(None), postgres: |label| fixture(Some(label));
    an_invitation_is_mailed_with_its_code_and_the_schools_name_and_nothing_else,
    refused_mails_are_retried_until_taken,
    a_dead_letter_is_listed_and_retried_by_the_operator_only,
    push_messages_are_encrypted_for_the_device_and_signed_with_vapid,
    bad_push_subscriptions_are_refused_and_write_nothing,
    a_gone_subscription_is_dropped_and_not_tried_again,
    erasure_removes_the_persons_addresses_and_subscriptions,
    a_notification_by_email_says_what_and_where_but_not_the_message,
    a_digest_gathers_every_notification_released_together_into_one_mail,
    a_notification_older_than_the_late_delivery_limit_is_left_to_the_app,
);

/// Tests that drive the worker's rounds themselves, at moments of their choosing.
const DRIVE_THE_WORKER: [&str; 2] = [
    "a_digest_gathers_every_notification_released_together_into_one_mail",
    "a_notification_older_than_the_late_delivery_limit_is_left_to_the_app",
];

/// A server delivering to its own SMTP sink (that refuses nothing until told) and allowed to
/// push to loopback endpoints.
struct Fixture {
    api: Api,
    smtp: SmtpSink,
    push: PushSink,
}

fn configure(o: &mut ServeOptions, smtp: &SmtpSink, max_attempts: u32) {
    o.delivery.run_worker = true;
    o.delivery.smtp_url = Some(smtp.url());
    o.delivery.mail_from = Some("Kring <kring@school.example>".into());
    o.delivery.public_url = "https://kring.example".into();
    o.delivery.push_allow_loopback_http = true;
    o.delivery.max_attempts = max_attempts;
    o.delivery.retry_base = Duration::from_millis(20);
    o.delivery.retry_cap = Duration::from_millis(100);
    o.delivery.poll_interval = Duration::from_millis(50);
}

async fn fixture(postgres: Option<&'static str>) -> Fixture {
    let smtp = SmtpSink::start().await;
    let push = PushSink::start().await;
    let s = smtp.clone();
    let worker = postgres.is_none_or(|label| !DRIVE_THE_WORKER.contains(&label));
    let api = match (postgres, worker) {
        (Some(label), true) => Api::postgres_with(label, move |o| configure(o, &s, 3)).await,
        (Some(label), false) => {
            Api::postgres_with(label, move |o| {
                configure(o, &s, 3);
                o.delivery.run_worker = false;
            })
            .await
        }
        (None, _) => Api::sqlite_with(move |o| configure(o, &s, 3)).await,
    };
    Fixture { api, smtp, push }
}

/// Waits (up to a minute) until the read models have caught up with the log and the worker has
/// looked at every notification released so far.
async fn worker_idle(api: &Api) {
    api.caught_up().await;
    let db = &api.running.state.system.db;
    for _ in 0..1200 {
        let now = chrono::Utc::now();
        let waiting = store::released(db, now, now - chrono::Duration::days(3), 1)
            .await
            .unwrap();
        if waiting.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the worker never looked at every released notification");
}

/// Waits (up to a minute) until `done` holds for the jobs of `person`.
async fn jobs_until(
    api: &Api,
    person: PersonId,
    what: &str,
    done: impl Fn(&[store::Job]) -> bool,
) -> Vec<store::Job> {
    jobs_of_kind_until(api, person, None, what, done).await
}

/// Like [`jobs_until`], for the jobs on `channel` only.
async fn push_jobs_until(
    api: &Api,
    person: PersonId,
    what: &str,
    done: impl Fn(&[store::Job]) -> bool,
) -> Vec<store::Job> {
    jobs_of_kind_until(api, person, Some("push"), what, done).await
}

async fn jobs_of_kind_until(
    api: &Api,
    person: PersonId,
    channel: Option<&str>,
    what: &str,
    done: impl Fn(&[store::Job]) -> bool,
) -> Vec<store::Job> {
    for _ in 0..1200 {
        let mut jobs = store::jobs_of(&api.running.state.system.db, person)
            .await
            .unwrap();
        jobs.retain(|j| channel.is_none_or(|c| j.channel == c));
        if done(&jobs) {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs = store::jobs_of(&api.running.state.system.db, person)
        .await
        .unwrap();
    panic!("never {what}: {jobs:#?}");
}

async fn invitee_of(api: &Api, invitation: uuid::Uuid) -> PersonId {
    let events = api
        .running
        .state
        .exec
        .events_of(&StreamName::invitation(
            kring_domain::InvitationId::from_uuid(invitation),
        ))
        .await
        .unwrap();
    events
        .into_iter()
        .find_map(|(_, e)| match e {
            kring_domain::Event::Invitation(
                kring_domain::invitation::InvitationEvent::Invited(i),
            ) => Some(i.invitee_id),
            _ => None,
        })
        .unwrap()
}

async fn an_invitation_is_mailed_with_its_code_and_the_schools_name_and_nothing_else(f: Fixture) {
    let Fixture { api, smtp, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;
    let mails = smtp.wait_for("the invitation", |m| !m.is_empty()).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, ["ouder@home.example"]);
    assert_eq!(mail.from, "kring@school.example");
    assert_eq!(mail.key(), format!("invitation:{invitation}/email"));
    assert_eq!(
        mail.header("Message-ID").unwrap(),
        format!("<invitation.{invitation}.email@school.example>")
    );
    let body = mail.body();
    assert!(body.contains(&code), "the code is in the mail: {body}");
    assert!(mail.header("Subject").unwrap().contains("De Regenboog"));
    assert!(body.contains("De Regenboog"), "{body}");
    assert!(
        body.contains("https://kring.example/invitations/accept"),
        "{body}"
    );
    // No child's name (Sanne J.) and nothing else of the school's people.
    for name in ["Sanne", "Juf", "Directeur"] {
        assert!(
            !mail.data.contains(name),
            "{name} in the mail: {}",
            mail.data
        );
    }

    // The code rests sealed for the invitee in the log, never in plain text.
    let stream = StreamName::invitation(kring_domain::InvitationId::from_uuid(invitation));
    let events = api
        .running
        .state
        .system
        .store
        .read_stream_to_end(&stream)
        .await
        .unwrap();
    let secret = code.split_once('.').unwrap().1;
    assert!(events.iter().all(|e| !e.payload.contains(secret)));
    assert!(
        events[0].payload.contains("\"code\":{\"$sealed\""),
        "{}",
        events[0].payload
    );

    // Delivered once, recorded as such; the code stays the one that accepts.
    let invitee = invitee_of(&api, invitation).await;
    let jobs = jobs_until(&api, invitee, "delivered", |j| {
        j.iter().any(|j| j.state == JobState::Delivered)
    })
    .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 1);
    api.post(
        "/v1/invitations/accept",
        None,
        json!({"code": code, "display_name": "Ouder"}),
    )
    .await
    .expect(200);
}

async fn refused_mails_are_retried_until_taken(f: Fixture) {
    let Fixture { api, smtp, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    smtp.refuse_next(2);
    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;
    let mails = smtp.wait_for("the invitation", |m| !m.is_empty()).await;
    assert_eq!(smtp.refused(), 2);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body().contains(&code));
    let invitee = invitee_of(&api, invitation).await;
    let jobs = jobs_until(&api, invitee, "delivered", |j| {
        j.iter().any(|j| j.state == JobState::Delivered)
    })
    .await;
    assert_eq!(jobs[0].attempts, 3, "two refusals, then taken: {jobs:#?}");
    assert_eq!(jobs[0].last_error, None);
}

async fn a_dead_letter_is_listed_and_retried_by_the_operator_only(f: Fixture) {
    let Fixture { api, smtp, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    // Three attempts allowed: refuse all three.
    smtp.refuse_next(3);
    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;
    let invitee = invitee_of(&api, invitation).await;
    let jobs = jobs_until(&api, invitee, "a dead letter", |j| {
        j.iter().any(|j| j.state == JobState::Dead)
    })
    .await;
    assert_eq!(jobs[0].attempts, 3);
    assert_eq!(smtp.refused(), 3);
    assert!(smtp.mails().is_empty());

    let op = api.operator();
    let teacher = api.person(s.teacher);
    api.get("/v1/operator/dead-letters", &teacher)
        .await
        .expect(403);
    api.get("/v1/operator/dead-letters?limit=0", &op)
        .await
        .expect(422);
    let listed = api.get("/v1/operator/dead-letters", &op).await.expect(200);
    let letters = listed.body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{}", listed.text);
    let letter = &letters[0];
    assert_eq!(
        letter["idempotency_key"],
        format!("invitation:{invitation}/email")
    );
    assert_eq!(letter["kind"], "invitation");
    assert_eq!(letter["channel"], "email");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["last_error"], "transient: smtp 451");
    assert!(
        !listed.text.contains('@'),
        "no address in the list: {}",
        listed.text
    );
    let id = letter["delivery_id"].as_str().unwrap();

    let retry = format!("/v1/operator/dead-letters/{id}/retry");
    api.post(&retry, Some(&teacher), json!({}))
        .await
        .expect(403);
    api.post(
        &format!("/v1/operator/dead-letters/{}/retry", uuid::Uuid::now_v7()),
        Some(&op),
        json!({}),
    )
    .await
    .expect(404);
    let retried = api.post(&retry, Some(&op), json!({})).await.expect(200);
    assert_eq!(retried.body["state"], "pending");
    let mails = smtp
        .wait_for("the retried invitation", |m| !m.is_empty())
        .await;
    assert!(mails[0].body().contains(&code));
    jobs_until(&api, invitee, "delivered", |j| {
        j.iter()
            .any(|j| j.state == JobState::Delivered && j.attempts == 1)
    })
    .await;
    // No longer a dead letter: a second retry finds none.
    api.post(&retry, Some(&op), json!({})).await.expect(404);
    let listed = api.get("/v1/operator/dead-letters", &op).await.expect(200);
    assert_eq!(listed.body["dead_letters"], json!([]));
}

/// A guardian with a subscribed device, and the conversation their child's teacher answers in.
async fn subscribed_guardian(
    api: &Api,
    push: &PushSink,
    s: &School,
    device: &Device,
    name: &str,
) -> (PersonId, uuid::Uuid) {
    let mum = s.guardian(api, s.child_a, "Mum").await;
    // Her notifications so far (the approval) were looked at before she had a device.
    worker_idle(api).await;
    let subscribed = api
        .post(
            "/v1/me/push-subscriptions",
            Some(&api.person(mum)),
            json!({"endpoint": push.endpoint(name), "keys": device.keys(), "expirationTime": null}),
        )
        .await
        .expect(201);
    let subscription: uuid::Uuid = subscribed.body["subscription_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (mum, subscription)
}

async fn start_conversation(api: &Api, s: &School, mum: PersonId) -> uuid::Uuid {
    let started = api
        .post(
            "/v1/conversations",
            Some(&api.person(mum)),
            json!({"child_id": s.child_a, "body": "Mag Sanne morgen eerder weg?"}),
        )
        .await
        .expect(201);
    started.body["conversation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn push_messages_are_encrypted_for_the_device_and_signed_with_vapid(f: Fixture) {
    let Fixture { api, push, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let device = Device::new();
    let (mum, subscription) = subscribed_guardian(&api, &push, &s, &device, "mum-phone").await;
    let conversation = start_conversation(&api, &s, mum).await;
    let reply = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&api.person(s.teacher)),
            json!({"body": "Dat is goed, tot morgen."}),
        )
        .await
        .expect(201);
    let message_id = reply.body["message_id"].as_str().unwrap().to_owned();

    let requests = push
        .wait_for("the reply's notification", |r| !r.is_empty())
        .await;
    assert_eq!(requests.len(), 1, "only mum is subscribed");
    let request = &requests[0];
    assert_eq!(request.path, "/push/mum-phone");
    assert_eq!(request.headers["content-encoding"], "aes128gcm");
    assert_eq!(request.headers["topic"].to_str().unwrap().len(), 32);
    assert!(
        request.headers["ttl"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let public_key = api.get("/v1/push/vapid-public-key", "").await.expect(200);
    let public_key = public_key.body["public_key"].as_str().unwrap();
    let contact = sinks::verify_vapid(request, public_key, "http://127.0.0.1");
    assert_eq!(contact, "mailto:kring@school.example");

    let payload = device.decrypt(&request.body);
    let key = format!("{message_id}:{mum}/push/{subscription}");
    assert_eq!(payload["idempotency_key"], key, "{payload}");
    assert!(
        payload["title"].as_str().unwrap().contains("De Regenboog"),
        "{payload}"
    );
    assert!(payload["url"]
        .as_str()
        .unwrap()
        .starts_with("https://kring.example/notifications/"));
    let text = payload.to_string();
    assert!(
        !text.contains("tot morgen") && !text.contains("Sanne"),
        "no message text, no child: {text}"
    );
    // Nothing readable on the wire.
    assert!(!String::from_utf8_lossy(&request.body).contains("De Regenboog"));

    // Delivered: the app no longer lists it.
    push_jobs_until(&api, mum, "delivered", |j| {
        j.iter().any(|j| j.state == JobState::Delivered)
    })
    .await;
    let listed = api
        .get("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    // Sent, the reply is no longer listed; the approval, released before she had a device, was
    // not sent and still is.
    let kinds: Vec<&str> = listed.body["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["invitation_approved"], "{}", listed.text);
}

async fn bad_push_subscriptions_are_refused_and_write_nothing(f: Fixture) {
    let Fixture { api, push, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let device = Device::new();
    let mum = s.guardian(&api, s.child_a, "Mum").await;
    let token = api.person(mum);
    let head = api.head().await;
    let good = device.keys();
    for (endpoint, keys) in [
        ("https://10.1.2.3/push".to_owned(), good.clone()),
        ("https://169.254.169.254/latest".to_owned(), good.clone()),
        ("https://printer.local/push".to_owned(), good.clone()),
        ("http://push.example.com/x".to_owned(), good.clone()),
        ("ftp://push.example.com/x".to_owned(), good.clone()),
        (
            push.endpoint("x"),
            json!({"p256dh": "AAAA", "auth": good["auth"]}),
        ),
        (
            push.endpoint("x"),
            json!({"p256dh": good["p256dh"], "auth": "c2hvcnQ"}),
        ),
        (
            push.endpoint("x"),
            json!({"p256dh": "not base64!", "auth": good["auth"]}),
        ),
    ] {
        let r = api
            .post(
                "/v1/me/push-subscriptions",
                Some(&token),
                json!({"endpoint": endpoint, "keys": keys}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422, "{endpoint} {keys}: {}", r.text);
        assert_eq!(r.code(), "validation_failed", "{endpoint}: {}", r.text);
    }
    api.post(
        "/v1/me/push-subscriptions",
        Some(&api.operator()),
        json!({"endpoint": push.endpoint("x"), "keys": good}),
    )
    .await
    .expect(403);
    assert_eq!(api.head().await, head, "nothing written");
    // Someone else's subscription is not found.
    let (_, theirs) = {
        let r = api
            .post(
                "/v1/me/push-subscriptions",
                Some(&api.person(s.teacher)),
                json!({"endpoint": push.endpoint("t"), "keys": good}),
            )
            .await
            .expect(201);
        (
            r.position(),
            r.body["subscription_id"].as_str().unwrap().to_owned(),
        )
    };
    api.send(
        api.request(
            reqwest::Method::DELETE,
            &format!("/v1/me/push-subscriptions/{theirs}"),
        )
        .bearer_auth(&token),
    )
    .await
    .expect(404);
    api.send(
        api.request(
            reqwest::Method::DELETE,
            &format!("/v1/me/push-subscriptions/{theirs}"),
        )
        .bearer_auth(api.person(s.teacher)),
    )
    .await
    .expect(200);
}

async fn a_gone_subscription_is_dropped_and_not_tried_again(f: Fixture) {
    let Fixture { api, push, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let device = Device::new();
    let (mum, subscription) = subscribed_guardian(&api, &push, &s, &device, "old-phone").await;
    push.answer(410);
    let conversation = start_conversation(&api, &s, mum).await;
    let teacher = api.person(s.teacher);
    let path = format!("/v1/conversations/{conversation}/messages");
    api.post(&path, Some(&teacher), json!({"body": "Eén"}))
        .await
        .expect(201);
    let jobs = push_jobs_until(&api, mum, "dropped", |j| {
        j.iter().any(|j| j.state == JobState::Dropped)
    })
    .await;
    assert_eq!(jobs[0].last_error.as_deref(), Some("subscription gone 410"));
    assert_eq!(jobs[0].attempts, 1);
    // The person's stream records it, and the address is gone.
    let types = api.event_types(StreamName::person(mum)).await;
    assert!(
        types.contains(&"PushSubscriptionExpired".to_owned()),
        "{types:?}"
    );
    for _ in 0..1200 {
        if store::address_count(&api.running.state.system.db, mum)
            .await
            .unwrap()
            == 1
        {
            break; // the e-mail address from the invitation stays
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store::address(&api.running.state.system.db, mum, &subscription.to_string())
            .await
            .unwrap()
            .is_none()
    );
    // A second message: nothing is sent to the gone device, and the first is not tried again.
    api.post(&path, Some(&teacher), json!({"body": "Twee"}))
        .await
        .expect(201);
    // Once the worker has looked at it: no job for it (no device), the first not tried again.
    worker_idle(&api).await;
    let jobs = push_jobs_until(&api, mum, "the second seen", |j| !j.is_empty()).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, JobState::Dropped);
    assert_eq!(
        push.requests().len(),
        1,
        "the gone endpoint was called once"
    );
    // Deleting a gone subscription: not found.
    api.send(
        api.request(
            reqwest::Method::DELETE,
            &format!("/v1/me/push-subscriptions/{subscription}"),
        )
        .bearer_auth(api.person(mum)),
    )
    .await
    .expect(404);
}

async fn erasure_removes_the_persons_addresses_and_subscriptions(f: Fixture) {
    let Fixture { api, push, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let device = Device::new();
    let (mum, _) = subscribed_guardian(&api, &push, &s, &device, "mum-phone").await;
    let db = api.running.state.system.db.clone();
    for _ in 0..1200 {
        if store::address_count(&db, mum).await.unwrap() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store::address_count(&db, mum).await.unwrap(),
        2,
        "her e-mail address and her phone"
    );
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    for _ in 0..1200 {
        if store::address_count(&db, mum).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store::address_count(&db, mum).await.unwrap(), 0);
    // The sealed subscription in her stream is erased with her key.
    let events = api
        .running
        .state
        .exec
        .events_of(&StreamName::person(mum))
        .await
        .unwrap();
    let sealed = events
        .iter()
        .find_map(|(_, e)| match e {
            kring_domain::Event::Person(kring_domain::person::PersonEvent::PushSubscribed(p)) => {
                Some(p.subscription.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(api
        .running
        .state
        .system
        .vault
        .open(&sealed)
        .await
        .unwrap()
        .is_erased());
    // And she can subscribe no more.
    let again = api
        .post(
            "/v1/me/push-subscriptions",
            Some(&api.person(mum)),
            json!({"endpoint": push.endpoint("again"), "keys": device.keys()}),
        )
        .await
        .expect(422);
    assert_eq!(again.code(), "validation_failed", "{}", again.text);
    assert!(push.requests().is_empty());
}

async fn set_channel(api: &Api, person: PersonId, kinds: serde_json::Value, digest_at: &str) {
    api.send(
        api.request(reqwest::Method::PUT, "/v1/me/notification-preferences")
            .bearer_auth(api.person(person))
            .json(&json!({"kinds": kinds, "digest_at": digest_at, "timezone": "Europe/Amsterdam"})),
    )
    .await
    .expect(200);
}

async fn a_notification_by_email_says_what_and_where_but_not_the_message(f: Fixture) {
    let Fixture { api, smtp, .. } = f;
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mum").await;
    set_channel(&api, mum, json!({"message": "email"}), "18:00").await;
    let conversation = start_conversation(&api, &s, mum).await;
    let reply = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&api.person(s.teacher)),
            json!({"body": "Dat is goed, tot morgen."}),
        )
        .await
        .expect(201);
    let message_id = reply.body["message_id"].as_str().unwrap().to_owned();
    let key = format!("{message_id}:{mum}/email");
    let mails = smtp
        .wait_for("the reply's notification", |m| {
            m.iter().any(|m| m.key() == key)
        })
        .await;
    let mail = mails.iter().find(|m| m.key() == key).unwrap();
    assert_eq!(
        mail.to,
        ["mum@home.example"],
        "to the address she was invited at"
    );
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject.contains("De Regenboog") && subject.contains("a new message"),
        "{subject}"
    );
    let body = mail.body();
    assert!(
        body.contains(&format!(
            "https://kring.example/notifications/{message_id}:{mum}"
        )),
        "{body}"
    );
    for secret in ["tot morgen", "Sanne", "Juf"] {
        assert!(!mail.data.contains(secret), "{secret} in {}", mail.data);
    }
    // Sent once, and no longer listed for her app.
    let jobs = jobs_until(&api, mum, "delivered", |j| {
        j.iter()
            .any(|j| j.key == key && j.state == JobState::Delivered)
    })
    .await;
    assert_eq!(jobs.iter().filter(|j| j.key == key).count(), 1);
    let listed = api
        .get("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    assert!(!listed.text.contains(&message_id), "{}", listed.text);
}

async fn a_digest_gathers_every_notification_released_together_into_one_mail(f: Fixture) {
    use kring_api::delivery::{worker, Delivery};
    let Fixture { api, smtp, .. } = f;
    let state = api.running.state.clone();
    let delivery: std::sync::Arc<Delivery> = state.delivery.clone().unwrap();
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mum").await;
    set_channel(&api, mum, json!({"message": "digest"}), "07:00").await;
    let conversation = start_conversation(&api, &s, mum).await;
    let path = format!("/v1/conversations/{conversation}/messages");
    let mut ids = Vec::new();
    for body in ["Eén", "Twee", "Drie"] {
        let r = api
            .post(&path, Some(&api.person(s.teacher)), json!({"body": body}))
            .await
            .expect(201);
        ids.push(format!("{}:{mum}", r.body["message_id"].as_str().unwrap()));
    }
    api.caught_up().await;
    // Now: the digest is not due yet; nothing but the invitation mail goes out.
    worker::round(&state, &delivery, chrono::Utc::now())
        .await
        .unwrap();
    let before = smtp.mails().len();
    assert!(smtp
        .mails()
        .iter()
        .all(|m| m.key().starts_with("invitation:")));
    // A day on, past 07:00 in Amsterdam: one mail for the three.
    let later = chrono::Utc::now() + chrono::Duration::hours(25);
    while worker::round(&state, &delivery, later).await.unwrap() > 0 {}
    let mails = smtp.mails();
    let digests: Vec<_> = mails
        .iter()
        .filter(|m| m.key().starts_with("digest:"))
        .collect();
    assert_eq!(digests.len(), 1, "{mails:#?}");
    assert_eq!(mails.len(), before + 1);
    let digest = digests[0];
    assert!(
        digest.key().starts_with(&format!("digest:{mum}:")) && digest.key().ends_with("/email")
    );
    assert_eq!(digest.to, ["mum@home.example"]);
    let body = digest.body();
    assert!(body.contains("(3 in all)"), "{body}");
    assert!(
        body.contains("De Regenboog (Kring): a new message in a conversation (3 times)"),
        "{body}"
    );
    for secret in ["Twee", "Drie", "Sanne"] {
        assert!(!digest.data.contains(secret), "{secret} in {}", digest.data);
    }
    // All three delivered; another round sends nothing more.
    for id in &ids {
        let n =
            kring_projections::models::outbox::notification(&state.system.db, id.parse().unwrap())
                .await
                .unwrap()
                .unwrap();
        assert!(n.delivered, "{id}");
    }
    worker::round(&state, &delivery, later).await.unwrap();
    assert_eq!(smtp.mails().len(), before + 1);
}

async fn a_notification_older_than_the_late_delivery_limit_is_left_to_the_app(f: Fixture) {
    use kring_api::delivery::{worker, Config, Delivery, DEFAULT_MAX_AGE_HOURS};
    let Fixture { api, smtp, .. } = f;
    let state = api.running.state.clone();
    let delivery: std::sync::Arc<Delivery> = state.delivery.clone().unwrap();
    assert_eq!(
        delivery.config.max_age,
        Duration::from_secs(DEFAULT_MAX_AGE_HOURS * 3600),
        "three days unless configured"
    );
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mum").await;
    // In her digest, at 07:00 in Amsterdam: released within the next 25 hours.
    set_channel(&api, mum, json!({"message": "digest"}), "07:00").await;
    let conversation = start_conversation(&api, &s, mum).await;
    let reply = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&api.person(s.teacher)),
            json!({"body": "Tot morgen."}),
        )
        .await
        .expect(201);
    let id = format!("{}:{mum}", reply.body["message_id"].as_str().unwrap());
    api.caught_up().await;
    // The worker first comes to it more than three days after its release: not sent.
    let late = chrono::Utc::now() + chrono::Duration::hours(25 + 72 + 1);
    while worker::round(&state, &delivery, late).await.unwrap() > 0 {}
    let digests = |smtp: &SmtpSink| {
        smtp.mails()
            .iter()
            .filter(|m| m.key().starts_with("digest:"))
            .count()
    };
    assert_eq!(digests(&smtp), 0);
    let n = kring_projections::models::outbox::notification(&state.system.db, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!n.delivered);
    let listed = api
        .get("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    assert!(
        listed.text.contains(&id),
        "still in her app: {}",
        listed.text
    );
    // A worker with a longer limit (`--delivery-max-age-hours 200`) sends it.
    let longer = Delivery::new(
        Config {
            max_age: Duration::from_secs(200 * 3600),
            ..delivery.config.clone()
        },
        &state.system.config.data_dir,
    )
    .unwrap();
    while worker::round(&state, &longer, late).await.unwrap() > 0 {}
    assert_eq!(digests(&smtp), 1);
    let n = kring_projections::models::outbox::notification(&state.system.db, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(n.delivered);
}
