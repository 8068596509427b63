//! Posts and media over real HTTP, on SQLite and on PostgreSQL: uploads, posting with consent
//! warnings, "who may see this?", consent withdrawal hiding photos, the feed, reading a post and
//! the bytes, tagging, removal by crypto-shredding, and no plaintext anywhere on disk.
//!
//! The school is built through the routes: schools, staff, groups, children, invitations
//! (invite, accept, approve) and consent decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::school_server;
use kring_api::auth::Caller;
use kring_api::media::{decrypt_file, parse_file, CHUNK_SIZE};
use kring_api::server::ServeOptions;
use kring_api::state::Limits;
use kring_domain::access::AccessEvent;
use kring_domain::{Actor, ChildId, Event, GroupId, PersonId, Purpose, SchoolId, StreamName};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use uuid::Uuid;

/// The media upload limit of the test servers.
const MEDIA_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// A server on a real socket, and a school in it.

/// The shared HTTP fixture, with this suite's media limit and its calls.
struct Env {
    api: school_server::Api,
}

impl std::ops::Deref for Env {
    type Target = school_server::Api;
    fn deref(&self) -> &Self::Target {
        &self.api
    }
}

/// The test servers' options: a small media limit.
fn media_limit(limit: usize) -> impl FnOnce(&mut ServeOptions) {
    move |options| {
        options.limits = Limits {
            media_body: limit,
            ..Limits::default()
        };
    }
}

impl Env {
    async fn sqlite_with_media_limit(limit: usize) -> Self {
        Self {
            api: school_server::Api::sqlite_with(media_limit(limit)).await,
        }
    }

    async fn sqlite() -> Self {
        Self::sqlite_with_media_limit(MEDIA_LIMIT).await
    }

    async fn postgres() -> Self {
        Self {
            api: school_server::Api::postgres_with("api_posts_media", media_limit(MEDIA_LIMIT))
                .await,
        }
    }

    /// `method path` as `who`: the status and the body (JSON, or its text when not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        who: Caller,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path).bearer_auth(self.token(who));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer = self.send(req).await;
        let value = if answer.text.is_empty() || !answer.body.is_null() {
            answer.body
        } else {
            Value::String(answer.text)
        };
        (answer.status, value)
    }

    async fn ok(&self, method: Method, path: &str, who: Caller, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, who, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    async fn upload(&self, who: Caller, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let res = self
            .request(Method::POST, "/v1/media")
            .bearer_auth(self.token(who))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The bytes of a media item as `who` gets them (`Err(status)` when refused).
    async fn media(&self, who: Caller, media: &str, min: u64) -> Result<(String, Vec<u8>), u16> {
        let res = self
            .request(
                Method::GET,
                &format!("/v1/media/{media}?min_position={min}"),
            )
            .bearer_auth(self.token(who))
            .send()
            .await
            .unwrap();
        if !res.status().is_success() {
            return Err(res.status().as_u16());
        }
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        Ok((content_type, res.bytes().await.unwrap().to_vec()))
    }

    /// The media ids of `post` in `who`'s feed (`None`: the post is not in it).
    async fn feed_media(&self, who: Caller, post: &str, min: u64) -> Option<Vec<String>> {
        let feed = self
            .ok(
                Method::GET,
                &format!("/v1/feed?min_position={min}"),
                who,
                None,
            )
            .await;
        feed["posts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["post_id"] == post)
            .map(|p| {
                p["media"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["media_id"].as_str().unwrap().to_owned())
                    .collect()
            })
    }

    fn media_dir(&self) -> std::path::PathBuf {
        self.data_dir().join("media")
    }
}

fn id<T: From<Uuid>>(v: &Value, field: &str) -> T {
    T::from(v[field].as_str().unwrap().parse::<Uuid>().unwrap())
}

fn person(p: PersonId) -> Caller {
    Caller::Person(p)
}

/// Two class groups and the school group; a director, a teacher per class, a compliance
/// officer; children `a` and `b` in class 1 with two guardians each, `c` in class 2 with one.
struct School {
    school_group: GroupId,
    class1: GroupId,
    class2: GroupId,
    director: PersonId,
    teacher1: PersonId,
    teacher2: PersonId,
    officer: PersonId,
    a: ChildId,
    b: ChildId,
    c: ChildId,
    a_parents: [PersonId; 2],
    b_parents: [PersonId; 2],
    c_parent: PersonId,
}

impl School {
    fn parents_of_class1(&self) -> [PersonId; 4] {
        [
            self.a_parents[0],
            self.a_parents[1],
            self.b_parents[0],
            self.b_parents[1],
        ]
    }
}

async fn add_staff(env: &Env, school: SchoolId, by: Caller, role: &str) -> PersonId {
    let v = env
        .ok(
            Method::POST,
            &format!("/v1/schools/{school}/staff"),
            by,
            Some(json!({"display_name": format!("Juf {role}"), "email": format!("{role}-{}@school.example", Uuid::now_v7()), "role": role})),
        )
        .await;
    id(&v, "person_id")
}

async fn enroll(env: &Env, group: GroupId, by: Caller, name: &str) -> ChildId {
    let v = env
        .ok(
            Method::POST,
            &format!("/v1/groups/{group}/children"),
            by,
            Some(json!({"first_name": name, "last_initial": "J"})),
        )
        .await;
    id(&v, "child_id")
}

/// Invites, accepts and approves a guardian for `child` through the invitation routes.
async fn link_guardian(env: &Env, staff: PersonId, child: ChildId) -> PersonId {
    let sent = env
        .ok(
            Method::POST,
            "/v1/invitations",
            person(staff),
            Some(json!({"child_id": child, "email": format!("ouder-{}@mail.example", Uuid::now_v7())})),
        )
        .await;
    let res = env
        .request(Method::POST, "/v1/invitations/accept")
        .json(&json!({"code": sent["code"], "display_name": "Ouder"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let accepted: Value = res.json().await.unwrap();
    env.ok(
        Method::POST,
        &format!(
            "/v1/invitations/{}/approve",
            sent["invitation_id"].as_str().unwrap()
        ),
        person(staff),
        Some(json!({})),
    )
    .await;
    id(&accepted, "person_id")
}

/// A guardian's consent decision through the consent route; answers the position.
async fn decide_consent(
    env: &Env,
    guardian: PersonId,
    child_id: ChildId,
    purpose: Purpose,
    granted: bool,
) -> u64 {
    env.ok(
        Method::PUT,
        &format!("/v1/children/{child_id}/consents/{}", purpose.as_str()),
        person(guardian),
        Some(json!({ "granted": granted })),
    )
    .await["position"]
        .as_u64()
        .unwrap()
}

async fn school(env: &Env) -> School {
    let (school, school_group) = register(env).await;
    let director = add_staff(env, school, Caller::Operator, "director").await;
    let d = person(director);
    let teacher1 = add_staff(env, school, d, "teacher").await;
    let teacher2 = add_staff(env, school, d, "teacher").await;
    let officer = add_staff(env, school, d, "compliance_officer").await;
    let mut classes = Vec::new();
    for (name, teacher) in [("Groep 3", teacher1), ("Groep 4", teacher2)] {
        let v = env
            .ok(
                Method::POST,
                &format!("/v1/schools/{school}/groups"),
                d,
                Some(json!({ "name": name })),
            )
            .await;
        let group: GroupId = id(&v, "group_id");
        env.ok(
            Method::POST,
            &format!("/v1/groups/{group}/staff"),
            d,
            Some(json!({ "person_id": teacher })),
        )
        .await;
        classes.push(group);
    }
    let a = enroll(env, classes[0], d, "Sanne").await;
    let b = enroll(env, classes[0], d, "Daan").await;
    let c = enroll(env, classes[1], d, "Noor").await;
    let a_parents = [
        link_guardian(env, teacher1, a).await,
        link_guardian(env, teacher1, a).await,
    ];
    let b_parents = [
        link_guardian(env, teacher1, b).await,
        link_guardian(env, teacher1, b).await,
    ];
    let c_parent = link_guardian(env, teacher2, c).await;
    School {
        school_group,
        class1: classes[0],
        class2: classes[1],
        director,
        teacher1,
        teacher2,
        officer,
        a,
        b,
        c,
        a_parents,
        b_parents,
        c_parent,
    }
}

/// Posts `body` to `group` as `by`, with `media` (uploaded by `by`, nobody tagged): the post's
/// id and the position that published it.
async fn post_untagged(
    env: &Env,
    by: PersonId,
    group: GroupId,
    body: &str,
    media: &[&str],
) -> (String, u64) {
    let media: Vec<Value> = media.iter().map(|m| json!({ "media_id": m })).collect();
    let v = env
        .ok(
            Method::POST,
            &format!("/v1/groups/{group}/posts"),
            person(by),
            Some(json!({ "body": body, "media": media })),
        )
        .await;
    (
        v["post_id"].as_str().unwrap().to_owned(),
        v["position"].as_u64().unwrap(),
    )
}

/// A small JPEG-signed photo carrying `marker`, so it can be looked for on disk.
fn photo(marker: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    for _ in 0..64 {
        bytes.extend_from_slice(marker.as_bytes());
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

async fn upload_photo(env: &Env, who: PersonId, marker: &str) -> String {
    let (status, v) = env.upload(person(who), "image/jpeg", photo(marker)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["media_id"].as_str().unwrap().to_owned()
}

/// Whether any file under `dir` contains `needle`.
fn found_on_disk(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

fn media_files(env: &Env) -> usize {
    std::fs::read_dir(env.media_dir()).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "kmedia")
        })
        .count()
    })
}

async fn access_events(env: &Env, subject: &str) -> Vec<(Actor, String)> {
    env.running
        .state
        .exec
        .events_of(&StreamName::access(subject.parse().unwrap()))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| match e {
            Event::Access(AccessEvent::AccessLogged(l)) => {
                (l.accessor, l.reason.describe(&l.subject))
            }
            other => panic!("not an access event: {other:?}"),
        })
        .collect()
}

kring_testkit::on_both_backends!(sqlite: |_| Env::sqlite(), postgres: |_| Env::postgres();
    posting_tagged_photos_warns_of_each_child_without_consent_and_from_how_many_parents,
    viewers_are_answered_to_audience_staff_and_compliance_officers_only,
    withdrawn_consent_hides_a_photo_from_exactly_the_right_parents,
    removal_destroys_the_keys_so_bytes_and_text_are_unreadable,
    uploads_over_the_limit_or_of_the_wrong_type_are_refused_and_nothing_is_stored,
    an_upload_is_seen_and_attached_by_its_uploader_only_and_only_once,
    tagging_and_untagging_change_who_may_see_a_photo,
    posting_checks_rights_and_input_and_writes_nothing_when_refused,
    the_feed_pages_through_every_post_once,
    the_retention_job_expires_posts_past_their_schools_period_and_destroys_their_keys,
    erasing_a_child_removes_every_photo_that_shows_the_child_and_lists_them,
    only_the_author_edits_a_post_and_its_earlier_text_stays_in_the_log,
    a_removal_stopped_after_destroying_the_keys_is_recorded_by_the_sweep,
);

// ---------------------------------------------------------------------------------------------
// The tests.

async fn posting_tagged_photos_warns_of_each_child_without_consent_and_from_how_many_parents(
    env: Env,
) {
    let s = school(&env).await;
    decide_consent(&env, s.b_parents[0], s.b, Purpose::GroupCommunication, true).await;
    let only_a = upload_photo(&env, s.teacher1, "PHOTO-MARKER-ONLY-A").await;
    let a_and_b = upload_photo(&env, s.teacher1, "PHOTO-MARKER-A-AND-B").await;
    let only_b = upload_photo(&env, s.teacher1, "PHOTO-MARKER-ONLY-B").await;
    let body = "Uitje naar het bos BODY-MARKER-7f3a";
    let (status, v) = env
        .call(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class1),
            person(s.teacher1),
            Some(json!({"body": body, "media": [
                {"media_id": only_a, "tagged_children": [s.a]},
                {"media_id": a_and_b, "tagged_children": [s.a, s.b]},
                {"media_id": only_b, "tagged_children": [s.b]},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let a = s.a.to_string();
    assert_eq!(
        v["warnings"],
        json!([
            {"media_id": only_a, "child_id": a, "purpose": "group_communication", "withheld_from": 2},
            {"media_id": a_and_b, "child_id": a, "purpose": "group_communication", "withheld_from": 2},
        ]),
        "a has no consent: both photos showing a are withheld from b's two parents; b has consent"
    );
    let post = v["post_id"].as_str().unwrap().to_owned();
    let at = v["position"].as_u64().unwrap();

    // What each sees follows the warnings.
    for parent in s.a_parents {
        assert_eq!(
            env.feed_media(person(parent), &post, at).await.unwrap(),
            vec![only_a.clone(), a_and_b.clone(), only_b.clone()],
            "a's parents see every photo (own child; b has consent)"
        );
    }
    for parent in s.b_parents {
        assert_eq!(
            env.feed_media(person(parent), &post, at).await.unwrap(),
            vec![only_b.clone()],
            "b's parents see only the photo without a"
        );
    }
    let read = env
        .ok(
            Method::GET,
            &format!("/v1/posts/{post}?min_position={at}"),
            person(s.b_parents[1]),
            None,
        )
        .await;
    assert_eq!(read["body"], body);
    assert_eq!(read["media"].as_array().unwrap().len(), 1);
    assert_eq!(read["media"][0]["content_type"], "image/jpeg");
    let (content_type, bytes) = env
        .media(person(s.a_parents[0]), &a_and_b, at)
        .await
        .unwrap();
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(
        bytes,
        photo("PHOTO-MARKER-A-AND-B"),
        "the bytes come back as uploaded"
    );
    assert_eq!(
        env.media(person(s.b_parents[0]), &a_and_b, at).await,
        Err(404)
    );

    // No plaintext anywhere on disk: not the photo bytes, not the body.
    for needle in [
        "PHOTO-MARKER-ONLY-A",
        "PHOTO-MARKER-A-AND-B",
        "BODY-MARKER-7f3a",
        "Sanne",
    ] {
        assert_eq!(
            found_on_disk(env.data_dir(), needle.as_bytes()),
            Vec::<String>::new(),
            "{needle} is on disk in plaintext"
        );
    }
    assert!(
        !found_on_disk(env.data_dir(), b"KRINGMEDIA2").is_empty(),
        "the check looks at the files that hold the photos"
    );
}

async fn viewers_are_answered_to_audience_staff_and_compliance_officers_only(env: Env) {
    let s = school(&env).await;
    let photo_id = upload_photo(&env, s.teacher1, "VIEWERS").await;
    let v = env
        .ok(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class1),
            person(s.teacher1),
            Some(json!({"body": "Gym", "media": [{"media_id": photo_id, "tagged_children": [s.a, s.b]}]})),
        )
        .await;
    let at = v["position"].as_u64().unwrap();
    let path = format!("/v1/media/{photo_id}/viewers?min_position={at}");
    let answer = env.ok(Method::GET, &path, person(s.teacher1), None).await;
    let reasons: std::collections::BTreeMap<String, String> = answer["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["person_id"].as_str().unwrap().to_owned(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: std::collections::BTreeMap<String, String> =
        [(s.teacher1, "staff"), (s.director, "staff")]
            .into_iter()
            .map(|(p, r)| (p.to_string(), r.to_owned()))
            .collect();
    assert_eq!(
        reasons, expected,
        "a and b both lack consent: only the audience's staff see it"
    );
    let withheld: Vec<(String, String)> = answer["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["person_id"].as_str().unwrap().to_owned(),
                w["because"].to_string(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for p in s.a_parents {
        expected.push((
            p.to_string(),
            json!([{"child_id": s.b.to_string(), "purpose": "group_communication"}]).to_string(),
        ));
    }
    for p in s.b_parents {
        expected.push((
            p.to_string(),
            json!([{"child_id": s.a.to_string(), "purpose": "group_communication"}]).to_string(),
        ));
    }
    expected.sort();
    let mut got = withheld;
    got.sort();
    assert_eq!(
        got, expected,
        "each parent is withheld because of the other child"
    );

    // The director sees it too; a compliance officer may ask, and that read is logged.
    env.ok(Method::GET, &path, person(s.director), None).await;
    assert!(access_events(&env, &photo_id).await.is_empty());
    env.ok(Method::GET, &path, person(s.officer), None).await;
    env.ok(Method::GET, &path, Caller::Operator, None).await;
    let logged = access_events(&env, &photo_id).await;
    assert_eq!(
        logged.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![Actor::Person(s.officer), Actor::Operator],
        "the compliance officer's and the operator's reads are recorded"
    );
    assert!(logged[0].1.contains("/viewers"), "{logged:?}");

    // Parents and other staff are not told: asked twice, so that the second question is
    // answered with the roster the first one cached (one statement) as well as the long way.
    for (who, status) in [
        (s.teacher2, StatusCode::NOT_FOUND),
        (s.c_parent, StatusCode::NOT_FOUND),
        (s.a_parents[0], StatusCode::NOT_FOUND),
    ] {
        for _ in 0..2 {
            let (got, problem) = env.call(Method::GET, &path, person(who), None).await;
            assert_eq!(got, status, "{problem}");
            assert_eq!(problem["code"], "not_found");
        }
    }
    // A parent who may see the photo knows it exists: told no, not "not found".
    decide_consent(&env, s.b_parents[0], s.b, Purpose::GroupCommunication, true).await;
    let at = decide_consent(&env, s.a_parents[0], s.a, Purpose::GroupCommunication, true).await;
    let (got, _) = env
        .call(
            Method::GET,
            &format!("/v1/media/{photo_id}/viewers?min_position={at}"),
            person(s.a_parents[0]),
            None,
        )
        .await;
    assert_eq!(got, StatusCode::FORBIDDEN);
    let (got, _) = env
        .call(
            Method::GET,
            &format!("/v1/media/{}/viewers", Uuid::now_v7()),
            person(s.teacher1),
            None,
        )
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);
}

async fn withdrawn_consent_hides_a_photo_from_exactly_the_right_parents(env: Env) {
    let s = school(&env).await;
    decide_consent(&env, s.b_parents[0], s.b, Purpose::GroupCommunication, true).await;
    let photo_id = upload_photo(&env, s.teacher1, "WITHDRAWAL").await;
    let untagged = upload_photo(&env, s.teacher1, "UNTAGGED").await;
    let v = env
        .ok(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class1),
            person(s.teacher1),
            Some(json!({"body": "Kerstviering", "media": [
                {"media_id": photo_id, "tagged_children": [s.b]},
                {"media_id": untagged},
            ]})),
        )
        .await;
    assert_eq!(v["warnings"], json!([]), "b has consent: no warning");
    let post = v["post_id"].as_str().unwrap().to_owned();
    let at = v["position"].as_u64().unwrap();
    for p in s.parents_of_class1() {
        assert_eq!(
            env.feed_media(person(p), &post, at).await.unwrap(),
            vec![photo_id.clone(), untagged.clone()]
        );
        assert!(env.media(person(p), &photo_id, at).await.is_ok());
    }

    // One of b's guardians withdraws: b no longer has effective consent.
    let at = decide_consent(
        &env,
        s.b_parents[1],
        s.b,
        Purpose::GroupCommunication,
        false,
    )
    .await;
    for p in s.a_parents {
        assert_eq!(
            env.feed_media(person(p), &post, at).await.unwrap(),
            vec![untagged.clone()],
            "a's parents lose the photo of b"
        );
        assert_eq!(env.media(person(p), &photo_id, at).await, Err(404));
        let read = env
            .ok(
                Method::GET,
                &format!("/v1/posts/{post}?min_position={at}"),
                person(p),
                None,
            )
            .await;
        assert_eq!(read["media"].as_array().unwrap().len(), 1);
    }
    for p in s.b_parents {
        assert_eq!(
            env.feed_media(person(p), &post, at).await.unwrap(),
            vec![photo_id.clone(), untagged.clone()],
            "b's own parents still see their child"
        );
        assert!(env.media(person(p), &photo_id, at).await.is_ok());
    }
    for staff in [s.teacher1, s.director] {
        assert!(
            env.media(person(staff), &photo_id, at).await.is_ok(),
            "staff always see"
        );
    }

    // A parent of another class sees none of it: not the post, not the photos.
    let c = person(s.c_parent);
    assert_eq!(env.feed_media(c, &post, at).await, None);
    for m in [&photo_id, &untagged] {
        assert_eq!(env.media(c, m, at).await, Err(404));
    }
    let (status, problem) = env
        .call(
            Method::GET,
            &format!("/v1/posts/{post}?min_position={at}"),
            c,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_found");
    assert_eq!(env.media(person(s.teacher2), &photo_id, at).await, Err(404));
    let (status, _) = env
        .call(
            Method::GET,
            &format!("/v1/posts/{post}"),
            person(s.teacher2),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nor does the teacher of another class"
    );

    // Consent given again: visible again.
    let at = decide_consent(&env, s.b_parents[1], s.b, Purpose::GroupCommunication, true).await;
    assert!(env
        .media(person(s.a_parents[0]), &photo_id, at)
        .await
        .is_ok());

    // The compliance officer reads the photo and the post; both reads are logged.
    assert!(env.media(person(s.officer), &photo_id, at).await.is_ok());
    env.ok(
        Method::GET,
        &format!("/v1/posts/{post}"),
        Caller::Operator,
        None,
    )
    .await;
    assert_eq!(
        access_events(&env, &photo_id)
            .await
            .iter()
            .map(|(a, _)| *a)
            .collect::<Vec<_>>(),
        vec![Actor::Person(s.officer)]
    );
    assert_eq!(
        access_events(&env, &post)
            .await
            .iter()
            .map(|(a, _)| *a)
            .collect::<Vec<_>>(),
        vec![Actor::Operator]
    );
}

async fn removal_destroys_the_keys_so_bytes_and_text_are_unreadable(env: Env) {
    let s = school(&env).await;
    let first = upload_photo(&env, s.teacher1, "REMOVED-WITH-POST").await;
    let second = upload_photo(&env, s.teacher1, "REMOVED-ALONE").await;
    let kept = upload_photo(&env, s.teacher1, "KEPT").await;
    let (post, _) = post_untagged(&env, s.teacher1, s.class1, "Eerste post", &[&first]).await;
    let (other, at) =
        post_untagged(&env, s.teacher1, s.class1, "Tweede post", &[&second, &kept]).await;
    let first_file = env.media_dir().join(format!("{first}.kmedia"));
    let second_file = env.media_dir().join(format!("{second}.kmedia"));
    // Copies, as a backup would hold them.
    let first_copy = std::fs::read(&first_file).unwrap();
    let second_copy = std::fs::read(&second_file).unwrap();
    assert!(env.media(person(s.a_parents[0]), &first, at).await.is_ok());

    // Who may not remove: a parent is told no, another class's parent is told nothing.
    let reason = Some(json!({"reason": "Verkeerde klas"}));
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("/v1/posts/{post}"),
            person(s.a_parents[0]),
            reason.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("/v1/posts/{post}"),
            person(s.c_parent),
            reason.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("/v1/media/{second}"),
            person(s.teacher2),
            reason.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = env
        .call(
            Method::DELETE,
            &format!("/v1/posts/{post}"),
            person(s.teacher1),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        env.media(person(s.teacher1), &first, at).await.is_ok(),
        "refusals change nothing"
    );

    // The author removes the first post; the director removes one photo of the second.
    let removed = env
        .ok(
            Method::DELETE,
            &format!("/v1/posts/{post}"),
            person(s.teacher1),
            reason.clone(),
        )
        .await;
    let removed_media = env
        .ok(
            Method::DELETE,
            &format!("/v1/media/{second}"),
            person(s.director),
            reason.clone(),
        )
        .await;
    let at = removed_media["position"].as_u64().unwrap();
    assert!(at > removed["position"].as_u64().unwrap());

    for who in [s.teacher1, s.director, s.a_parents[0]] {
        assert_eq!(env.media(person(who), &first, at).await, Err(404));
        assert_eq!(env.media(person(who), &second, at).await, Err(404));
        assert!(
            env.media(person(who), &kept, at).await.is_ok(),
            "the rest stays"
        );
        let (status, _) = env
            .call(
                Method::GET,
                &format!("/v1/posts/{post}?min_position={at}"),
                person(who),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(env.feed_media(person(who), &post, at).await, None);
        assert_eq!(
            env.feed_media(person(who), &other, at).await.unwrap(),
            vec![kept.clone()]
        );
    }
    assert_eq!(env.media(Caller::Operator, &first, at).await, Err(404));

    // On disk: the files are gone, and the copies neither hold the plaintext nor decrypt.
    assert!(!first_file.exists() && !second_file.exists());
    let vault = &env.running.state.system.vault;
    for (copy, marker) in [
        (&first_copy, "REMOVED-WITH-POST"),
        (&second_copy, "REMOVED-ALONE"),
    ] {
        assert!(!copy.windows(marker.len()).any(|w| w == marker.as_bytes()));
        assert_eq!(
            decrypt_file(vault, copy).await.unwrap(),
            None,
            "the key is destroyed: the ciphertext opens for nobody"
        );
    }
    let kept_copy = std::fs::read(env.media_dir().join(format!("{kept}.kmedia"))).unwrap();
    assert_eq!(
        decrypt_file(vault, &kept_copy).await.unwrap(),
        Some(photo("KEPT")),
        "the same check opens a photo that was not removed"
    );

    // The removed post's text reads as erased in the event log itself.
    let events = env
        .running
        .state
        .exec
        .events_of(&StreamName::post(post.parse::<Uuid>().unwrap().into()))
        .await
        .unwrap();
    let mut payload: Value = serde_json::from_str(&events[0].0.payload).unwrap();
    assert_eq!(vault.open_value(&mut payload).await.unwrap(), 1);
    assert_eq!(payload["body"], "[erased]");

    // Removing again: gone, for the author too, and nobody's request does any work: no key is
    // destroyed again (the erasure ledger gains nothing).
    let ledger = vault.ledger().expect("the embedded ledger");
    let entries = ledger.entries().unwrap().len();
    for who in [s.teacher1, s.c_parent] {
        for path in [format!("/v1/posts/{post}"), format!("/v1/media/{second}")] {
            let (status, _) = env
                .call(Method::DELETE, &path, person(who), reason.clone())
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
    assert_eq!(ledger.entries().unwrap().len(), entries);
}

/// A removal destroys the keys first (naming them in the erasure ledger) and records itself
/// after; a process that stopped between the two leaves live posts with destroyed keys, and the
/// start-up sweep records their removal, once.
async fn a_removal_stopped_after_destroying_the_keys_is_recorded_by_the_sweep(env: Env) {
    use kring_api::erasure::sweep;
    use kring_domain::post::{PostEvent, RemovalReason};
    let s = school(&env).await;
    let whole = upload_photo(&env, s.teacher1, "WHOLE-POST").await;
    let alone = upload_photo(&env, s.teacher1, "ALONE").await;
    let kept = upload_photo(&env, s.teacher1, "KEPT").await;
    let (post, _) = post_untagged(&env, s.teacher1, s.class1, "Weg", &[&whole]).await;
    let (other, _) = post_untagged(&env, s.teacher1, s.class1, "Blijft", &[&alone, &kept]).await;
    let post_id = kring_domain::PostId::from_uuid(post.parse().unwrap());
    let other_id = kring_domain::PostId::from_uuid(other.parse().unwrap());
    let media_id = |m: &str| kring_domain::MediaId::from_uuid(m.parse().unwrap());
    // The keys are destroyed, and the process stops before recording either removal.
    let state = &env.running.state;
    let files = kring_api::media::MediaFiles::new(
        env.media_dir(),
        std::sync::Arc::clone(&state.system.vault),
    );
    files.shred_post(post_id, [media_id(&whole)]).await.unwrap();
    files.shred(media_id(&alone)).await.unwrap();

    let report = sweep(state).await.unwrap();
    assert_eq!(report.removals_recorded, 2, "{report:?}");
    assert_eq!(report.failed, 0);
    let removed = state
        .exec
        .events_of(&StreamName::post(post_id))
        .await
        .unwrap();
    assert!(matches!(
        removed.last().map(|(r, e)| (r.actor, e)),
        Some((Actor::System, Event::Post(PostEvent::PostRemoved(r)))) if r.reason == RemovalReason::InterruptedRemoval
    ));
    let other_events = state
        .exec
        .events_of(&StreamName::post(other_id))
        .await
        .unwrap();
    assert!(matches!(
        other_events.last().map(|(_, e)| e),
        Some(Event::Post(PostEvent::MediaRemoved(m))) if m.media_id == media_id(&alone)
    ));
    let at = env.running.state.system.store.head().await.unwrap();
    let parent = person(s.a_parents[0]);
    assert_eq!(env.media(parent, &whole, at).await, Err(404));
    assert_eq!(env.media(parent, &alone, at).await, Err(404));
    assert!(env.media(parent, &kept, at).await.is_ok(), "the rest stays");
    // Once: a second sweep finds nothing to record.
    assert_eq!(sweep(state).await.unwrap().removals_recorded, 0);
    assert_eq!(state.system.store.head().await.unwrap(), at);
}

/// The retention job (`kring_api::retention::expire_due`), run as of a given time: nothing
/// before the school's retention period has run out; then the post is expired for everyone, its
/// media files are deleted and their keys destroyed, its text reads as erased; a later post
/// and a second run are left alone.
async fn the_retention_job_expires_posts_past_their_schools_period_and_destroys_their_keys(
    env: Env,
) {
    use kring_api::retention::expire_due;
    let s = school(&env).await;
    let old_photo = upload_photo(&env, s.teacher1, "EXPIRES").await;
    let (old, _) = post_untagged(&env, s.teacher1, s.class1, "Schoolreisje", &[&old_photo]).await;
    let posted = chrono::Utc::now();
    let state = &env.running.state;
    state.catch_up().await.unwrap();
    let file = env.media_dir().join(format!("{old_photo}.kmedia"));
    let copy = std::fs::read(&file).unwrap();

    // The school's period is 365 days (the default): a day short of it, nothing is due.
    let report = expire_due(state, posted + chrono::Duration::days(364))
        .await
        .unwrap();
    assert_eq!(report.expired.len(), 0, "{report:?}");
    assert!(file.exists());

    // A year after the first post was made it is due; one made after it is not yet.
    let new_photo = upload_photo(&env, s.teacher1, "STAYS").await;
    let (new, _) = post_untagged(&env, s.teacher1, s.class1, "Nieuwe post", &[&new_photo]).await;
    state.catch_up().await.unwrap();
    let a_year_on = posted + chrono::Duration::days(365);
    let report = expire_due(state, a_year_on).await.unwrap();
    assert_eq!(
        report
            .expired
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![old.clone()],
        "{report:?}"
    );
    let at = env.running.state.system.store.head().await.unwrap();

    for who in [s.teacher1, s.director, s.a_parents[0]] {
        assert_eq!(env.media(person(who), &old_photo, at).await, Err(404));
        assert!(env.media(person(who), &new_photo, at).await.is_ok());
        assert_eq!(env.feed_media(person(who), &old, at).await, None);
        assert_eq!(
            env.feed_media(person(who), &new, at).await.unwrap(),
            vec![new_photo.clone()]
        );
    }
    assert!(!file.exists(), "the expired photo's file is deleted");
    let vault = &state.system.vault;
    assert_eq!(
        decrypt_file(vault, &copy).await.unwrap(),
        None,
        "its key is destroyed: a backup copy opens for nobody"
    );
    let events = state
        .exec
        .events_of(&StreamName::post(old.parse::<Uuid>().unwrap().into()))
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "published, then expired");
    assert_eq!(events[1].0.event_type, "PostExpired");
    assert_eq!(events[1].0.actor, Actor::System);
    let mut payload: Value = serde_json::from_str(&events[0].0.payload).unwrap();
    vault.open_value(&mut payload).await.unwrap();
    assert_eq!(payload["body"], "[erased]");

    // Run again as of the same moment: the expired post is no longer live, the later one is
    // not due yet.
    state.catch_up().await.unwrap();
    let again = expire_due(state, a_year_on).await.unwrap();
    assert_eq!(again, kring_api::retention::RetentionReport::default());
}

/// Sends only the headers of an upload declaring `length` bytes over a raw socket; the status.
fn declared_upload(addr: std::net::SocketAddr, token: &str, length: usize) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Sends an upload with a chunked body (no Content-Length) over a raw socket; the status.
fn chunked_upload(addr: std::net::SocketAddr, token: &str, total: usize) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let send = std::thread::spawn(move || {
        let mut chunk = vec![0xFF_u8; 8192];
        // A JPEG signature, so that only the size is wrong.
        chunk[1] = 0xD8;
        let _ = writer.write_all(head.as_bytes());
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            if writer.write_all(format!("{n:x}\r\n").as_bytes()).is_err()
                || writer.write_all(&chunk[..n]).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                return;
            }
            sent += n;
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = send.join();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

async fn uploads_over_the_limit_or_of_the_wrong_type_are_refused_and_nothing_is_stored(env: Env) {
    let s = school(&env).await;
    let t = person(s.teacher1);
    // Over the limit by its declared length: refused from the headers alone. (Sending the whole
    // body races the refusal: the server answers and closes while the client still writes.)
    let token = env.token(t);
    let addr = env.running.addr;
    let status =
        tokio::task::spawn_blocking(move || declared_upload(addr, &token, MEDIA_LIMIT + 1))
            .await
            .unwrap();
    assert_eq!(status, 413);
    let refusals = [
        (
            "text/plain",
            photo("TEXT"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "application/octet-stream",
            photo("OCTETS"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "image/svg+xml",
            b"<svg onload=alert(1)/>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "image/png",
            photo("JPEG-AS-PNG"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "video/mp4",
            b"<html><script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "image/jpeg",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (content_type, bytes, status, code) in refusals {
        let (got, problem) = env.upload(t, content_type, bytes).await;
        assert_eq!(got, status, "{content_type}: {problem}");
        assert_eq!(problem["code"], code);
    }
    // A body without a length is cut off at the limit as well.
    let token = env.token(t);
    let addr = env.running.addr;
    let status = tokio::task::spawn_blocking(move || chunked_upload(addr, &token, MEDIA_LIMIT * 2))
        .await
        .unwrap();
    assert_eq!(status, 413);
    // Only staff upload.
    for who in [person(s.a_parents[0]), Caller::Operator] {
        let (got, _) = env.upload(who, "image/jpeg", photo("PARENT")).await;
        assert_eq!(got, StatusCode::FORBIDDEN);
    }
    let res = env
        .request(Method::POST, "/v1/media")
        .header("content-type", "image/jpeg")
        .body(photo("ANON"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(media_files(&env), 0, "nothing refused was stored");

    // Exactly at the limit is fine; so is a video, and a type with parameters.
    let mut exact = photo("EXACT");
    exact.resize(MEDIA_LIMIT, 0);
    let (got, v) = env.upload(t, "image/jpeg", exact).await;
    assert_eq!(got, StatusCode::CREATED, "{v}");
    assert_eq!(v["size"], MEDIA_LIMIT);
    let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0VIDEO".to_vec();
    let (got, v) = env
        .upload(person(s.director), "Video/MP4; codecs=avc1", mp4.clone())
        .await;
    assert_eq!(got, StatusCode::CREATED, "{v}");
    assert_eq!(v["content_type"], "video/mp4");
    let (content_type, bytes) = env
        .media(person(s.director), v["media_id"].as_str().unwrap(), 0)
        .await
        .unwrap();
    assert_eq!((content_type.as_str(), bytes), ("video/mp4", mp4));
    assert_eq!(media_files(&env), 2);
    assert!(found_on_disk(env.data_dir(), b"VIDEO").is_empty());
}

async fn an_upload_is_seen_and_attached_by_its_uploader_only_and_only_once(env: Env) {
    let s = school(&env).await;
    let mine = upload_photo(&env, s.teacher1, "UNPOSTED").await;
    assert_eq!(
        env.media(person(s.teacher1), &mine, 0).await.unwrap().1,
        photo("UNPOSTED")
    );
    for who in [s.director, s.teacher2, s.a_parents[0]] {
        assert_eq!(
            env.media(person(who), &mine, 0).await,
            Err(404),
            "not posted: the uploader's only"
        );
    }
    // The director may post to the school group, but not with someone else's upload.
    let (status, problem) = env
        .call(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.school_group),
            person(s.director),
            Some(json!({"body": "Van de directie", "media": [{"media_id": mine}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    // Nor another teacher who could guess the id.
    let (status, _) = env
        .call(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class2),
            person(s.teacher2),
            Some(json!({"body": "x", "media": [{"media_id": mine}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, at) = post_untagged(&env, s.teacher1, s.class1, "Eindelijk", &[&mine]).await;
    assert!(
        env.media(person(s.a_parents[0]), &mine, at).await.is_ok(),
        "posted: the audience sees it"
    );
    let (status, problem) = env
        .call(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class1),
            person(s.teacher1),
            Some(json!({"body": "Nog eens", "media": [{"media_id": mine}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // An upload the uploader discards before posting is gone.
    let discarded = upload_photo(&env, s.teacher1, "DISCARDED").await;
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("/v1/media/{discarded}"),
            person(s.director),
            Some(json!({"reason": "weg"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.ok(
        Method::DELETE,
        &format!("/v1/media/{discarded}"),
        person(s.teacher1),
        Some(json!({"reason": "weg"})),
    )
    .await;
    assert_eq!(env.media(person(s.teacher1), &discarded, 0).await, Err(404));
    assert!(!env.media_dir().join(format!("{discarded}.kmedia")).exists());
}

async fn tagging_and_untagging_change_who_may_see_a_photo(env: Env) {
    let s = school(&env).await;
    let photo_id = upload_photo(&env, s.teacher1, "TAGGING").await;
    let (_, at) = post_untagged(&env, s.teacher1, s.class1, "Sportdag", &[&photo_id]).await;
    assert!(
        env.media(person(s.b_parents[0]), &photo_id, at)
            .await
            .is_ok(),
        "no one tagged: all see it"
    );

    let tags = format!("/v1/media/{photo_id}/tags");
    // Not staff of the audience: a parent who sees it is told no, others nothing.
    let (status, _) = env
        .call(
            Method::POST,
            &tags,
            person(s.b_parents[0]),
            Some(json!({"child_id": s.a})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for who in [s.teacher2, s.c_parent] {
        let (status, _) = env
            .call(
                Method::POST,
                &tags,
                person(who),
                Some(json!({"child_id": s.a})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // A child of another class cannot be tagged in a class-1 post.
    let (status, problem) = env
        .call(
            Method::POST,
            &tags,
            person(s.teacher1),
            Some(json!({"child_id": s.c})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = env
        .call(
            Method::POST,
            &tags,
            person(s.teacher1),
            Some(json!({"child": s.a})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let v = env
        .ok(
            Method::POST,
            &tags,
            person(s.teacher1),
            Some(json!({"child_id": s.a})),
        )
        .await;
    let at = v["position"].as_u64().unwrap();
    assert_eq!(
        env.media(person(s.b_parents[0]), &photo_id, at).await,
        Err(404),
        "a has no consent"
    );
    assert!(env
        .media(person(s.a_parents[0]), &photo_id, at)
        .await
        .is_ok());
    let (status, _) = env
        .call(
            Method::POST,
            &tags,
            person(s.teacher1),
            Some(json!({"child_id": s.a})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already tagged");

    let v = env
        .ok(
            Method::DELETE,
            &format!("{tags}/{}", s.a),
            person(s.director),
            None,
        )
        .await;
    let at = v["position"].as_u64().unwrap();
    assert!(
        env.media(person(s.b_parents[0]), &photo_id, at)
            .await
            .is_ok(),
        "untagged: visible again"
    );
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("{tags}/{}", s.a),
            person(s.teacher1),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not tagged");
    let (status, _) = env
        .call(
            Method::DELETE,
            &format!("{tags}/not-a-uuid"),
            person(s.teacher1),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn posting_checks_rights_and_input_and_writes_nothing_when_refused(env: Env) {
    let s = school(&env).await;
    let photo_id = upload_photo(&env, s.teacher1, "RIGHTS").await;
    let head = env.running.state.system.store.head().await.unwrap();
    let post_to = |g: GroupId| format!("/v1/groups/{g}/posts");
    let cases = [
        // Another class's teacher, a parent, the operator, a teacher on the school group.
        (
            s.class1,
            person(s.teacher2),
            json!({"body": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            s.class1,
            person(s.a_parents[0]),
            json!({"body": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            s.class1,
            Caller::Operator,
            json!({"body": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            s.school_group,
            person(s.teacher1),
            json!({"body": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            GroupId::generate(),
            person(s.teacher1),
            json!({"body": "x"}),
            StatusCode::NOT_FOUND,
        ),
        // Bad input.
        (
            s.class1,
            person(s.teacher1),
            json!({"body": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            s.class1,
            person(s.teacher1),
            json!({"body": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            s.class1,
            person(s.teacher1),
            json!({"body": "x", "media": [{"media_id": "nope"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            s.class1,
            person(s.teacher1),
            json!({"body": "x", "media": [{"media_id": photo_id, "tagged_children": [s.c]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            s.class1,
            person(s.teacher1),
            json!({"body": "x", "media": [{"media_id": photo_id}, {"media_id": photo_id}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            s.class1,
            person(s.teacher1),
            json!({"body": "x", "media": [{"media_id": Uuid::now_v7()}]}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (group, who, body, status) in cases {
        let (got, problem) = env
            .call(Method::POST, &post_to(group), who, Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(problem["code"].is_string(), "problem+json: {problem}");
    }
    // The list rules are the domain's, checked before any file is looked at (51 unknown items
    // are refused for their number, not looked up), with the domain's words.
    let too_many: Vec<Value> = (0..=kring_domain::post::MAX_MEDIA_PER_POST)
        .map(|_| json!({"media_id": Uuid::now_v7()}))
        .collect();
    let twice = json!([{"media_id": photo_id}, {"media_id": photo_id}]);
    for (media, words) in [
        (json!(too_many), "at most 50 items per post"),
        (twice, "is attached twice"),
    ] {
        let (got, problem) = env
            .call(
                Method::POST,
                &post_to(s.class1),
                person(s.teacher1),
                Some(json!({"body": "x", "media": media})),
            )
            .await;
        assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("invalid media: ") && detail.contains(words),
            "{detail}"
        );
    }
    assert_eq!(
        env.running.state.system.store.head().await.unwrap(),
        head,
        "nothing was written"
    );
    // The refusals did not keep the photo from being posted.
    let v = env
        .ok(
            Method::POST,
            &post_to(s.class1),
            person(s.teacher1),
            Some(json!({"body": "x", "media": [{"media_id": photo_id, "tagged_children": [s.a]}]})),
        )
        .await;
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    // The director posts to the school group: every staff member sees it; c's parent sees the
    // photo of a only with a's school_communication consent.
    let school_photo = upload_photo(&env, s.director, "SCHOOL").await;
    let v = env
        .ok(
            Method::POST,
            &post_to(s.school_group),
            person(s.director),
            Some(json!({"body": "Nieuwsbrief", "media": [{"media_id": school_photo, "tagged_children": [s.a]}]})),
        )
        .await;
    assert_eq!(
        v["warnings"],
        json!([{"media_id": school_photo, "child_id": s.a.to_string(), "purpose": "school_communication", "withheld_from": 3}]),
        "b's two parents and c's parent"
    );
    let at = decide_consent(
        &env,
        s.a_parents[0],
        s.a,
        Purpose::SchoolCommunication,
        true,
    )
    .await;
    assert!(env
        .media(person(s.c_parent), &school_photo, at)
        .await
        .is_ok());
    assert!(env
        .media(person(s.teacher2), &school_photo, at)
        .await
        .is_ok());
}

async fn the_feed_pages_through_every_post_once(env: Env) {
    let s = school(&env).await;
    let mut posted = Vec::new();
    let mut at = 0;
    for n in 0..5 {
        let v = env
            .ok(
                Method::POST,
                &format!("/v1/groups/{}/posts", s.class1),
                person(s.teacher1),
                Some(json!({ "body": format!("Bericht {n}") })),
            )
            .await;
        posted.push(v["post_id"].as_str().unwrap().to_owned());
        at = v["position"].as_u64().unwrap();
    }
    let reader = person(s.a_parents[0]);
    let mut seen = Vec::new();
    let mut path = format!("/v1/feed?limit=2&min_position={at}");
    loop {
        let page = env.ok(Method::GET, &path, reader, None).await;
        let posts = page["posts"].as_array().unwrap();
        assert!(posts.len() <= 2);
        seen.extend(
            posts
                .iter()
                .map(|p| p["post_id"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_str() {
            Some(cursor) => path = format!("/v1/feed?limit=2&before={cursor}"),
            None => break,
        }
    }
    posted.reverse();
    assert_eq!(seen, posted, "newest first, each once");
    let page = env
        .ok(
            Method::GET,
            &format!("/v1/feed?group_id={}", s.class2),
            reader,
            None,
        )
        .await;
    assert_eq!(
        page["posts"],
        json!([]),
        "filtered to a group they are not in"
    );
    let page = env
        .ok(
            Method::GET,
            &format!("/v1/feed?group_id={}", s.class1),
            reader,
            None,
        )
        .await;
    assert_eq!(page["posts"].as_array().unwrap().len(), 5);
    assert_eq!(page["posts"][0]["body"], "Bericht 4");
    assert_eq!(
        env.ok(Method::GET, "/v1/feed", person(s.c_parent), None)
            .await["posts"],
        json!([])
    );
    for bad in [
        "limit=0",
        "limit=101",
        "before=yesterday",
        "limit=x",
        "group_id=nope",
    ] {
        let (status, problem) = env
            .call(Method::GET, &format!("/v1/feed?{bad}"), reader, None)
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
        assert!(problem["code"].is_string(), "{bad}: {problem}");
    }
    let (status, _) = env
        .call(Method::GET, "/v1/feed", Caller::Operator, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_posts_and_media_route() {
    let env = Env::sqlite().await;
    let doc: Value = env
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/v1/media", &["post"][..]),
        ("/v1/media/{media_id}", &["get", "delete"][..]),
        ("/v1/media/{media_id}/tags", &["post"][..]),
        ("/v1/media/{media_id}/tags/{child_id}", &["delete"][..]),
        ("/v1/media/{media_id}/viewers", &["get"][..]),
        ("/v1/groups/{group_id}/posts", &["post"][..]),
        ("/v1/posts/{post_id}", &["get", "delete"][..]),
        ("/v1/feed", &["get"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is missing"
            );
        }
    }
    for schema in [
        "PostCreated",
        "ConsentWarning",
        "ViewersDoc",
        "FeedDoc",
        "Removal",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is missing"
        );
    }
}

async fn erasing_a_child_removes_every_photo_that_shows_the_child_and_lists_them(env: Env) {
    let s = school(&env).await;
    let t1 = person(s.teacher1);
    // Two photos show Sanne (one with Daan), one shows only Daan.
    let sanne = upload_photo(&env, s.teacher1, "SANNE-ALONE").await;
    let both = upload_photo(&env, s.teacher1, "SANNE-AND-DAAN").await;
    let daan = upload_photo(&env, s.teacher1, "DAAN-ALONE").await;
    let posted = env
        .ok(
            Method::POST,
            &format!("/v1/groups/{}/posts", s.class1),
            t1,
            Some(json!({"body": "Het schoolreisje", "media": [
                {"media_id": sanne, "tagged_children": [s.a]},
                {"media_id": both, "tagged_children": [s.a, s.b]},
                {"media_id": daan, "tagged_children": [s.b]},
            ]})),
        )
        .await;
    let post: String = posted["post_id"].as_str().unwrap().to_owned();
    let erased = env
        .ok(
            Method::POST,
            &format!("/v1/children/{}/erasure", s.a),
            person(s.director),
            Some(json!({})),
        )
        .await;
    let mut removed: Vec<&str> = erased["removed_media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    removed.sort_unstable();
    let mut expected = vec![sanne.as_str(), both.as_str()];
    expected.sort_unstable();
    assert_eq!(removed, expected);
    let at = erased["position"].as_u64().unwrap();
    // Gone for everyone, its bytes unreadable; the photo of Daan alone stays.
    for media in [&sanne, &both] {
        assert_eq!(env.media(t1, media, at).await, Err(404), "{media}");
    }
    assert!(env.media(t1, &daan, at).await.is_ok());
    for marker in ["SANNE-ALONE", "SANNE-AND-DAAN"] {
        assert!(found_on_disk(env.data_dir(), marker.as_bytes()).is_empty());
    }
    let read = env
        .ok(
            Method::GET,
            &format!("/v1/posts/{post}?min_position={at}"),
            t1,
            None,
        )
        .await;
    let shown: Vec<&str> = read["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["media_id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [daan.as_str()]);
    // Repeating removes nothing more.
    let again = env
        .ok(
            Method::POST,
            &format!("/v1/children/{}/erasure", s.a),
            Caller::Operator,
            Some(json!({})),
        )
        .await;
    assert_eq!(again["removed_media"], json!([]));
}

async fn only_the_author_edits_a_post_and_its_earlier_text_stays_in_the_log(env: Env) {
    let s = school(&env).await;
    let (post, _) = post_untagged(&env, s.teacher1, s.class1, "Morgen gym", &[]).await;
    let path = format!("/v1/posts/{post}");
    for who in [s.director, s.teacher2, s.a_parents[0], s.officer] {
        let (status, v) = env
            .call(
                Method::PATCH,
                &path,
                person(who),
                Some(json!({"body": "Niet van mij"})),
            )
            .await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{who}: {status} {v}"
        );
    }
    let (status, _) = env
        .call(
            Method::PATCH,
            &path,
            person(s.teacher1),
            Some(json!({"body": "  "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let edited = env
        .ok(
            Method::PATCH,
            &path,
            person(s.teacher1),
            Some(json!({"body": "Morgen gym, neem je gymschoenen mee"})),
        )
        .await;
    let at = edited["position"].as_u64().unwrap();
    let read = env
        .ok(
            Method::GET,
            &format!("{path}?min_position={at}"),
            person(s.a_parents[0]),
            None,
        )
        .await;
    assert_eq!(read["body"], "Morgen gym, neem je gymschoenen mee");
    let types: Vec<String> = env
        .running
        .state
        .exec
        .events_of(&StreamName::post(post.parse::<Uuid>().unwrap().into()))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.event_type().to_owned())
        .collect();
    assert_eq!(types, ["PostPublished", "PostEdited"]);
    // A teacher no longer on the group's staff edits nothing, not even their own post.
    env.ok(
        Method::DELETE,
        &format!("/v1/groups/{}/staff/{}", s.class1, s.teacher1),
        person(s.director),
        None,
    )
    .await;
    let (status, _) = env
        .call(
            Method::PATCH,
            &path,
            person(s.teacher1),
            Some(json!({"body": "Toch nog"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// Streaming: uploads and downloads in sealed chunks, on disk as they arrive.

/// The upload limit of the servers that take full-size uploads.
const FULL_LIMIT: usize = 20 * 1024 * 1024;
/// Ciphertext bytes per full chunk in a media file.
const SEALED_CHUNK: usize = CHUNK_SIZE + 16;

/// `len` bytes with a JPEG signature that do not repeat (so any slice can be looked for).
fn big_photo(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    let mut i: u64 = 0;
    while bytes.len() < len {
        bytes.extend_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i).to_le_bytes());
        i += 1;
    }
    bytes.truncate(len);
    bytes
}

/// Every entry of the media directory (files being written included).
fn media_dir_entries(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.media_dir()).map_or(Vec::new(), |d| {
        d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    });
    names.sort();
    names
}

/// How many data keys the installation's key vault holds (`vault.db`).
async fn vault_keys(env: &Env) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", env.data_dir().join("vault.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM subject_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

/// The school's director, through the routes (enough to upload).
async fn director(env: &Env) -> PersonId {
    let (school, _) = register(env).await;
    add_staff(env, school, Caller::Operator, "director").await
}

/// The operator registers "De Regenboog": its id and its whole-school group.
async fn register(env: &Env) -> (SchoolId, GroupId) {
    let v = env
        .ok(
            Method::POST,
            "/v1/schools",
            Caller::Operator,
            Some(json!({"name": "De Regenboog", "brin": "12AB"})),
        )
        .await;
    (id(&v, "school_id"), id(&v, "school_group_id"))
}

/// What a download gave: the status (`None`: the connection ended before a response head), the
/// bytes received, and whether the body ended cleanly.
async fn download(env: &Env, who: Caller, media: &str) -> (Option<StatusCode>, Vec<u8>, bool) {
    let sent = env
        .request(Method::GET, &format!("/v1/media/{media}"))
        .bearer_auth(env.token(who))
        .send()
        .await;
    let Ok(mut res) = sent else {
        return (None, Vec::new(), false);
    };
    let status = res.status();
    let mut bytes = Vec::new();
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return (Some(status), bytes, true),
            Err(_) => return (Some(status), bytes, false),
        }
    }
}

/// Sends an upload declaring `declared` bytes, sends `sent` of them and hangs up; the answer (may
/// be empty).
fn cut_off_upload(addr: std::net::SocketAddr, token: &str, declared: usize, sent: usize) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&big_photo(sent)).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_upload_is_encrypted_in_chunks_and_downloads_byte_for_byte() {
    let env = Env::sqlite_with_media_limit(FULL_LIMIT).await;
    let teacher = director(&env).await;
    let bytes = big_photo(FULL_LIMIT);
    let (status, v) = env
        .upload(person(teacher), "image/jpeg", bytes.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["size"], FULL_LIMIT);
    let media = v["media_id"].as_str().unwrap().to_owned();

    // On disk: the chunked format, one sealed chunk per 64 KiB, no plaintext, nothing else left.
    assert_eq!(media_dir_entries(&env), vec![format!("{media}.kmedia")]);
    let file = std::fs::read(env.media_dir().join(format!("{media}.kmedia"))).unwrap();
    assert!(file.starts_with(b"KRINGMEDIA2\n"));
    let (header, ciphertext) = parse_file(&file).unwrap();
    assert_eq!(header.size, FULL_LIMIT as u64);
    assert_eq!(
        ciphertext.len(),
        FULL_LIMIT + 16 * FULL_LIMIT.div_ceil(CHUNK_SIZE)
    );
    for at in [0, CHUNK_SIZE - 8, FULL_LIMIT / 2, FULL_LIMIT - 64] {
        let needle = &bytes[at..at + 64];
        assert!(!file.windows(64).any(|w| w == needle), "plaintext at {at}");
    }

    let res = env
        .request(Method::GET, &format!("/v1/media/{media}"))
        .bearer_auth(env.token(person(teacher)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert_eq!(
        res.headers()["content-length"],
        FULL_LIMIT.to_string().as_str()
    );
    let got = res.bytes().await.unwrap();
    assert!(got[..] == bytes[..], "the bytes come back as uploaded");
    assert_eq!(
        decrypt_file(&env.running.state.system.vault, &file)
            .await
            .unwrap()
            .as_deref(),
        Some(&bytes[..])
    );

    // Discarded: the key is gone, so the copy opens for nobody.
    env.ok(
        Method::DELETE,
        &format!("/v1/media/{media}"),
        person(teacher),
        Some(json!({"reason": "wrong photo"})),
    )
    .await;
    assert_eq!(env.media(person(teacher), &media, 0).await, Err(404));
    assert_eq!(
        decrypt_file(&env.running.state.system.vault, &file)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_midway_or_cut_off_leaves_no_file_and_nothing_in_the_log() {
    let env = Env::sqlite_with_media_limit(FULL_LIMIT).await;
    let teacher = director(&env).await;
    let head = env.running.state.system.store.head().await.unwrap();
    let keys = vault_keys(&env).await;

    // No length declared: refused once the bytes pass the limit, after many chunks were written.
    let token = env.token(person(teacher));
    let addr = env.running.addr;
    let status = tokio::task::spawn_blocking(move || chunked_upload(addr, &token, FULL_LIMIT + 1))
        .await
        .unwrap();
    assert_eq!(status, 413);
    assert_eq!(media_dir_entries(&env), Vec::<String>::new());

    // Cut off after 1 MiB of a declared 2 MiB: nothing stays once the server has let go.
    let token = env.token(person(teacher));
    let answer = tokio::task::spawn_blocking(move || {
        cut_off_upload(addr, &token, 2 * 1024 * 1024, 1024 * 1024)
    })
    .await
    .unwrap();
    assert!(!answer.contains(" 201 "), "{answer}");
    let mut left = media_dir_entries(&env);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = media_dir_entries(&env);
    }
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(env.running.state.system.store.head().await.unwrap(), head);
    assert_eq!(vault_keys(&env).await, keys, "no key was stored for them");

    // The same server still takes an upload.
    let (status, v) = env
        .upload(person(teacher), "image/jpeg", big_photo(100_000))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(vault_keys(&env).await, keys + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_file_cut_short_altered_or_reordered_is_never_served_whole() {
    let env = Env::sqlite_with_media_limit(FULL_LIMIT).await;
    let teacher = director(&env).await;
    let who = person(teacher);
    // Exactly five chunks.
    let bytes = big_photo(5 * CHUNK_SIZE);
    let (status, v) = env.upload(who, "image/jpeg", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let media = v["media_id"].as_str().unwrap().to_owned();
    let path = env.media_dir().join(format!("{media}.kmedia"));
    let original = std::fs::read(&path).unwrap();
    let at = original.len() - 5 * SEALED_CHUNK;
    let chunk = |i: usize| at + i * SEALED_CHUNK..at + (i + 1) * SEALED_CHUNK;
    assert_eq!(
        download(&env, who, &media).await,
        (Some(StatusCode::OK), bytes.clone(), true)
    );

    // The last chunk dropped and the size in the header made to match: chunk 3 was not sealed
    // as the last one.
    let mut cut = original[..chunk(4).start].to_vec();
    let claimed = format!("\"size\":{}", 5 * CHUNK_SIZE);
    let header_end = at;
    let text = String::from_utf8(cut[..header_end].to_vec()).unwrap();
    assert!(text.contains(&claimed));
    // Both sizes have six digits: the header keeps its length.
    let shorter = text.replace(&claimed, &format!("\"size\":{}", 4 * CHUNK_SIZE));
    assert_eq!(shorter.len(), text.len());
    cut.splice(..header_end, shorter.into_bytes());
    let mut flipped = original.clone();
    flipped[chunk(2).start + 100] ^= 0x01;
    let mut swapped = original.clone();
    swapped.copy_within(chunk(1), chunk(2).start);
    swapped[chunk(1)].copy_from_slice(&original[chunk(2)]);
    let one_chunk_short = original[..chunk(4).start].to_vec();

    // Each case, and how many good chunks may be sent before the bad one stops the download.
    for (case, file, good) in [
        ("last chunk dropped, header adjusted", cut, 3),
        ("last chunk dropped", one_chunk_short, 0),
        ("a bit flipped in chunk 2", flipped, 2),
        ("chunks 1 and 2 swapped", swapped, 1),
    ] {
        std::fs::write(&path, &file).unwrap();
        let (status, got, complete) = download(&env, who, &media).await;
        assert!(
            status != Some(StatusCode::OK) || !complete,
            "{case}: served as if whole ({} bytes)",
            got.len()
        );
        // Whatever was sent before the bad chunk is the true start, and nothing after it.
        match status {
            Some(StatusCode::OK) | None => {
                assert!(bytes.starts_with(&got), "{case}: wrong bytes sent");
                assert!(
                    got.len() <= good * CHUNK_SIZE,
                    "{case}: {} bytes sent",
                    got.len()
                );
            }
            Some(other) => assert_eq!(other, StatusCode::INTERNAL_SERVER_ERROR, "{case}"),
        }
        assert!(
            decrypt_file(&env.running.state.system.vault, &file)
                .await
                .is_err(),
            "{case}"
        );
    }

    // The file put back reads again: the key and the server were never the problem.
    std::fs::write(&path, &original).unwrap();
    assert_eq!(
        download(&env, who, &media).await,
        (Some(StatusCode::OK), bytes, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_the_first_format_sealed_whole_still_downloads_until_discarded() {
    let env = Env::sqlite_with_media_limit(FULL_LIMIT).await;
    let teacher = director(&env).await;
    let vault = &env.running.state.system.vault;
    let media = kring_domain::MediaId::generate();
    let bytes = big_photo(300_000);
    let envelope = vault
        .encrypt(kring_domain::access::Subject::Media(media), &bytes)
        .await
        .unwrap();
    let header = json!({
        "uploaded_by": teacher,
        "content_type": "image/jpeg",
        "size": bytes.len(),
        "uploaded_at": "2026-09-01T08:00:00Z",
        "subject": envelope.subject,
        "key_id": envelope.key_id,
        "nonce": envelope.nonce,
    });
    let mut file = b"KRINGMEDIA1\n".to_vec();
    file.extend(serde_json::to_vec(&header).unwrap());
    file.push(b'\n');
    {
        use base64::Engine;
        file.extend(
            base64::engine::general_purpose::STANDARD
                .decode(&envelope.ciphertext)
                .unwrap(),
        );
    }
    std::fs::create_dir_all(env.media_dir()).unwrap();
    std::fs::write(env.media_dir().join(format!("{media}.kmedia")), &file).unwrap();

    let media = media.to_string();
    let res = env
        .request(Method::GET, &format!("/v1/media/{media}"))
        .bearer_auth(env.token(person(teacher)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert!(res.bytes().await.unwrap()[..] == bytes[..]);
    assert_eq!(
        decrypt_file(vault, &file).await.unwrap().as_deref(),
        Some(&bytes[..])
    );

    // Altered, it is refused rather than served.
    let mut altered = file.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x01;
    std::fs::write(env.media_dir().join(format!("{media}.kmedia")), &altered).unwrap();
    let (status, got, _) = download(&env, person(teacher), &media).await;
    assert_eq!(status, Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(got.len() < bytes.len());
    std::fs::write(env.media_dir().join(format!("{media}.kmedia")), &file).unwrap();

    env.ok(
        Method::DELETE,
        &format!("/v1/media/{media}"),
        person(teacher),
        Some(json!({"reason": "duplicate"})),
    )
    .await;
    assert_eq!(env.media(person(teacher), &media, 0).await, Err(404));
    assert_eq!(decrypt_file(vault, &file).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_range_of_a_download_answers_206_and_one_beyond_the_item_416() {
    let env = Env::sqlite_with_media_limit(FULL_LIMIT).await;
    let teacher = director(&env).await;
    let size = 3 * CHUNK_SIZE + 1234;
    let bytes = big_photo(size);
    let (status, v) = env
        .upload(person(teacher), "image/jpeg", bytes.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let media = v["media_id"].as_str().unwrap().to_owned();
    let get = |range: Option<String>| {
        let mut request = env
            .request(Method::GET, &format!("/v1/media/{media}"))
            .bearer_auth(env.token(person(teacher)));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send()
    };
    let whole = get(None).await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap(), bytes);

    // Within one chunk, across chunk boundaries, to the end, the last bytes.
    let last = size - 1;
    for (asked, from, to) in [
        ("bytes=0-0".to_owned(), 0, 0),
        ("bytes=10-99".to_owned(), 10, 99),
        (
            format!("bytes={}-{}", CHUNK_SIZE - 5, 2 * CHUNK_SIZE + 5),
            CHUNK_SIZE - 5,
            2 * CHUNK_SIZE + 5,
        ),
        (format!("bytes={}-", 3 * CHUNK_SIZE), 3 * CHUNK_SIZE, last),
        (
            format!("bytes={}-{}", size - 10, size + 1000),
            size - 10,
            last,
        ),
        ("bytes=-100".to_owned(), size - 100, last),
    ] {
        let res = get(Some(asked.clone())).await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{asked}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {from}-{to}/{size}").as_str(),
            "{asked}"
        );
        assert_eq!(
            res.headers()["content-length"],
            (to - from + 1).to_string().as_str()
        );
        assert_eq!(res.bytes().await.unwrap(), bytes[from..=to], "{asked}");
    }

    // Starting at or beyond the end: 416, with the size.
    for asked in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 9),
        "bytes=-0".to_owned(),
    ] {
        let res = get(Some(asked.clone())).await.unwrap();
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{asked}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
        let problem: serde_json::Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "bad_request");
    }

    // Several ranges, another unit, a malformed one: ignored, the whole item.
    for asked in ["bytes=0-1,5-6", "items=0-1", "bytes=9-2"] {
        let res = get(Some(asked.to_owned())).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asked}");
        assert_eq!(res.bytes().await.unwrap().len(), size);
    }

    // A stranger gets 404 whatever the range.
    let stranger = env
        .request(Method::GET, &format!("/v1/media/{media}"))
        .bearer_auth(env.token(person(PersonId::generate())))
        .header("range", "bytes=0-10")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
}
