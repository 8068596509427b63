//! Access ends the moment a relation ends. For each way a relation ends — staff removed from the
//! school, a teacher taken off a group, a guardian unlinked by staff or leaving, a guardian
//! erased, a child unenrolled or moved — the person it concerns first uses every route the
//! relation opened (each must grant), then the relation ends, and the same requests, read with
//! the ending's position, are refused (`403` or `404` as problem+json) or no longer show what
//! they showed. Consent ends the same way: a new policy version that rewords a purpose withholds
//! what another family saw through it until a guardian decides again. On the real binary, on
//! SQLite and on PostgreSQL.

use crate::harness::{Backend, Body, Server, Who};
use crate::school::{school_today, School};
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// One request a relation granted, and what its answer must show while it is granted.
struct Probe {
    what: String,
    method: Method,
    path: String,
    body: Body,
    /// An id the 2xx answer shows while granted (lists); `None`: a 2xx answer is the grant.
    shows: Option<Uuid>,
}

impl Probe {
    fn new(method: Method, path: String, body: Body, shows: Option<Uuid>) -> Self {
        Self {
            what: format!("{method} {path}"),
            method,
            path,
            body,
            shows,
        }
    }

    fn get(path: String) -> Self {
        Self::new(Method::GET, path, Body::Empty, None)
    }

    fn list(path: String, shows: Uuid) -> Self {
        Self::new(Method::GET, path, Body::Empty, Some(shows))
    }

    fn write(method: Method, path: String, body: serde_json::Value) -> Self {
        Self::new(method, path, Body::Json(body), None)
    }
}

/// What a person reached through one relation.
#[derive(Clone, Copy)]
struct Reach {
    who: Uuid,
    group: Uuid,
    child: Uuid,
    post: Uuid,
    media: Uuid,
    conversation: Uuid,
    activity: Uuid,
}

/// Which of the reached things the ending takes away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// Everything reached through the group and the child.
    All,
    /// The group's things; the child's stay (a teacher taken off a group is still school staff
    /// and reads the consent of the school's children; a moved child's guardian keeps the child).
    GroupOnly,
    /// The child's things; the group's stay (the old teacher of a moved child).
    ChildOnly,
}

fn staff_probes(r: Reach, ends: Ends) -> Vec<Probe> {
    let Reach {
        group,
        child,
        post,
        media,
        conversation,
        activity,
        ..
    } = r;
    let starts = Utc::now() + Duration::days(20);
    let mut group_probes = vec![
        Probe::list("/v1/feed".into(), post),
        Probe::list(format!("/v1/feed?group_id={group}"), post),
        Probe::get(format!("/v1/posts/{post}")),
        Probe::get(format!("/v1/media/{media}")),
        Probe::get(format!("/v1/media/{media}/viewers")),
        Probe::get(format!("/v1/groups/{group}")),
        Probe::list(format!("/v1/groups/{group}/activities"), activity),
        Probe::get(format!("/v1/groups/{group}/absences")),
        Probe::get(format!("/v1/groups/{group}/invitations")),
        Probe::write(
            Method::POST,
            format!("/v1/groups/{group}/posts"),
            json!({"body": "Nog een bericht aan de klas."}),
        ),
        Probe::write(
            Method::PATCH,
            format!("/v1/posts/{post}"),
            json!({"body": "Aangepast bericht."}),
        ),
        Probe::write(
            Method::POST,
            format!("/v1/groups/{group}/activities"),
            json!({"title": "Sportdag", "starts_at": starts, "ends_at": starts + Duration::hours(4), "volunteer_slots": 4}),
        ),
    ];
    let mut child_probes = vec![
        Probe::list("/v1/conversations".into(), conversation),
        Probe::get(format!("/v1/conversations/{conversation}/messages")),
        Probe::list("/v1/me/notifications".into(), conversation),
        Probe::write(
            Method::POST,
            format!("/v1/conversations/{conversation}/messages"),
            json!({"body": "Nog een vraag van school."}),
        ),
        Probe::get(format!("/v1/children/{child}/absences")),
        Probe::write(
            Method::POST,
            "/v1/invitations".into(),
            json!({"child_id": child, "email": format!("oma-{}@thuis.example", Uuid::now_v7().simple())}),
        ),
    ];
    if ends == Ends::All {
        child_probes.push(Probe::get(format!("/v1/children/{child}/consents")));
    }
    match ends {
        Ends::All => {
            group_probes.append(&mut child_probes);
            group_probes
        }
        Ends::GroupOnly => group_probes,
        Ends::ChildOnly => child_probes,
    }
}

fn guardian_probes(r: Reach, school: Uuid, ends: Ends) -> Vec<Probe> {
    let Reach {
        group,
        child,
        post,
        media,
        conversation,
        activity,
        ..
    } = r;
    let day = school_today() + Duration::days(9);
    let mut group_probes = vec![
        Probe::list("/v1/feed".into(), post),
        Probe::list(format!("/v1/feed?group_id={group}"), post),
        Probe::get(format!("/v1/posts/{post}")),
        Probe::get(format!("/v1/media/{media}")),
        Probe::get(format!("/v1/groups/{group}")),
        Probe::list(format!("/v1/groups/{group}/activities"), activity),
        Probe::new(
            Method::POST,
            format!("/v1/activities/{activity}/volunteers"),
            Body::Empty,
            None,
        ),
    ];
    let mut child_probes = vec![
        Probe::list("/v1/conversations".into(), conversation),
        Probe::get(format!("/v1/conversations/{conversation}/messages")),
        Probe::list("/v1/me/notifications".into(), conversation),
        Probe::write(
            Method::POST,
            format!("/v1/conversations/{conversation}/messages"),
            json!({"body": "Dank u wel."}),
        ),
        Probe::write(
            Method::POST,
            "/v1/conversations".into(),
            json!({"child_id": child, "body": "Een nieuwe vraag."}),
        ),
        Probe::get(format!("/v1/children/{child}/consents")),
        Probe::write(
            Method::PUT,
            format!("/v1/children/{child}/consents/group_communication"),
            json!({"granted": true}),
        ),
        Probe::get(format!("/v1/children/{child}/absences")),
        Probe::write(
            Method::POST,
            format!("/v1/children/{child}/absences"),
            json!({"from": day, "to": day, "reason": "Familiebezoek"}),
        ),
        Probe::get(format!("/v1/schools/{school}/consent-policy")),
        Probe::get(format!("/v1/schools/{school}/settings")),
    ];
    match ends {
        Ends::All => {
            group_probes.append(&mut child_probes);
            group_probes
        }
        Ends::GroupOnly => group_probes,
        Ends::ChildOnly => child_probes,
    }
}

/// Whether the answer still grants what the probe reached.
fn grants(answer: &crate::harness::Answer, probe: &Probe) -> bool {
    (200..300).contains(&answer.status)
        && probe
            .shows
            .is_none_or(|id| answer.text().contains(&id.to_string()))
}

/// Sends every probe; each must grant. A volunteer probe is made once before: afterwards it is
/// asked again of a fresh activity (asking twice would be refused as a repeat, not for rights).
async fn all_granted(api: &Server, who: Uuid, probes: &[Probe], scenario: &str) {
    for probe in probes {
        let path = if probe.method == Method::GET {
            api.fresh(&probe.path)
        } else {
            probe.path.clone()
        };
        let answer = api
            .send(
                probe.method.clone(),
                &path,
                Who::Person(who),
                probe.body.clone(),
            )
            .await;
        assert!(
            grants(&answer, probe),
            "{scenario}: before the ending, {} should grant: {} {}",
            probe.what,
            answer.status,
            answer.text()
        );
    }
}

/// Sends every probe after the ending; collects each that still grants or is not refused
/// cleanly.
async fn none_granted(api: &Server, who: Uuid, probes: &[Probe], scenario: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for probe in probes {
        let path = if probe.method == Method::GET {
            api.fresh(&probe.path)
        } else {
            probe.path.clone()
        };
        let head = api.head().await;
        let answer = api
            .send(
                probe.method.clone(),
                &path,
                Who::Person(who),
                probe.body.clone(),
            )
            .await;
        let refused_cleanly = match answer.status {
            200..=299 => !grants(&answer, probe) && probe.method == Method::GET,
            403 | 404 => answer.is_problem() && api.head().await == head,
            _ => false,
        };
        if !refused_cleanly {
            failures.push(format!(
                "{scenario}: after the ending, {}: {} {}",
                probe.what,
                answer.status,
                answer.text().chars().take(300).collect::<String>()
            ));
        }
    }
    failures
}

/// A new teacher assigned to class A, with a post, a conversation (the guardian answered it,
/// so the teacher has a notification) and an activity of their own.
async fn working_teacher(api: &Server, s: &School) -> Reach {
    let teacher = s.new_teacher(api).await;
    api.post(
        &format!("/v1/groups/{}/staff", s.class_a),
        Who::Person(s.director),
        json!({"person_id": teacher}),
    )
    .await
    .expect(200);
    let media = School::upload(api, Who::Person(teacher), "invalfoto").await;
    let posted = api
        .post(
            &format!("/v1/groups/{}/posts", s.class_a),
            Who::Person(teacher),
            json!({"body": "Hallo, ik ben de invaller.", "media": [{"media_id": media, "tagged_children": []}]}),
        )
        .await;
    posted.expect(201);
    let started = api
        .post(
            "/v1/conversations",
            Who::Person(teacher),
            json!({"child_id": s.child, "participants": [teacher, s.guardian], "body": "Hoe gaat het thuis?"}),
        )
        .await;
    started.expect(201);
    let conversation = started.id("conversation_id");
    api.post(
        &format!("/v1/conversations/{conversation}/messages"),
        Who::Person(s.guardian),
        json!({"body": "Goed, dank u."}),
    )
    .await
    .expect(201);
    let starts = Utc::now() + Duration::days(10);
    let scheduled = api
        .post(
            &format!("/v1/groups/{}/activities", s.class_a),
            Who::Person(teacher),
            json!({"title": "Voorlezen", "starts_at": starts, "ends_at": starts + Duration::hours(1), "volunteer_slots": 5}),
        )
        .await;
    scheduled.expect(201);
    Reach {
        who: teacher,
        group: s.class_a,
        child: s.child,
        post: posted.id("post_id"),
        media,
        conversation,
        activity: scheduled.id("activity_id"),
    }
}

/// A new child in class A with a newly linked guardian, a photo of the child in class A, a
/// conversation between the teacher and the guardian, and an activity in class A.
async fn linked_guardian(api: &Server, s: &School, name: &str) -> Reach {
    let child = s.new_child(api).await;
    let guardian = s.link(api, s.teacher, child, name).await;
    let (post, media) = s.post_photo(api, &[child]).await;
    let started = api
        .post(
            "/v1/conversations",
            Who::Person(s.teacher),
            json!({"child_id": child, "body": "Welkom in de klas!"}),
        )
        .await;
    started.expect(201);
    let conversation = started.id("conversation_id");
    // The answer notifies the teacher, as the start notified the guardian.
    api.post(
        &format!("/v1/conversations/{conversation}/messages"),
        Who::Person(guardian),
        json!({"body": "Dank u!"}),
    )
    .await
    .expect(201);
    Reach {
        who: guardian,
        group: s.class_a,
        child,
        post,
        media,
        conversation,
        activity: s.activity(api).await,
    }
}

/// How a relation ends: the request that ends it (method, path, sender, status), made from the
/// school and what the person reached.
type Ending = fn(&School, &Reach) -> (Method, String, Who, u16);

/// Runs `end` and reads on with its position.
async fn end(api: &Server, method: Method, path: &str, by: Who, status: u16) {
    let body = if method == Method::POST {
        Body::Json(json!({}))
    } else {
        Body::Empty
    };
    api.send(method, path, by, body).await.expect(status);
}

async fn access_ends_when_the_relation_ends(backend: Backend) {
    let api = Server::start(backend).await;
    let s = School::build(&api).await;
    let mut failures = Vec::new();

    // Staff removed from the school.
    let r = working_teacher(&api, &s).await;
    let probes = staff_probes(r, Ends::All);
    all_granted(&api, r.who, &probes, "removed staff").await;
    end(
        &api,
        Method::DELETE,
        &format!("/v1/schools/{}/staff/{}", s.id, r.who),
        Who::Person(s.director),
        200,
    )
    .await;
    failures.extend(none_granted(&api, r.who, &probes, "removed staff").await);

    // A teacher taken off the group: still staff of the school.
    let r = working_teacher(&api, &s).await;
    let probes = staff_probes(r, Ends::GroupOnly);
    let kept = staff_probes(r, Ends::ChildOnly);
    all_granted(&api, r.who, &probes, "unassigned teacher").await;
    end(
        &api,
        Method::DELETE,
        &format!("/v1/groups/{}/staff/{}", s.class_a, r.who),
        Who::Person(s.director),
        200,
    )
    .await;
    failures.extend(none_granted(&api, r.who, &probes, "unassigned teacher").await);
    // The conversation was about a child of the group: that ends too.
    failures.extend(none_granted(&api, r.who, &kept, "unassigned teacher").await);

    // A guardian unlinked by staff, one who leaves, one erased, one whose child leaves school.
    let endings: [(&str, Ending); 4] = [
        ("guardian unlinked by the teacher", |s, r| {
            (
                Method::DELETE,
                format!("/v1/children/{}/guardians/{}", r.child, r.who),
                Who::Person(s.teacher),
                200,
            )
        }),
        ("guardian who left", |_, r| {
            (
                Method::DELETE,
                format!("/v1/children/{}/guardians/{}", r.child, r.who),
                Who::Person(r.who),
                200,
            )
        }),
        ("erased guardian", |s, r| {
            (
                Method::POST,
                format!("/v1/people/{}/erasure", r.who),
                Who::Person(s.director),
                202,
            )
        }),
        ("guardian of an unenrolled child", |s, r| {
            (
                Method::DELETE,
                format!("/v1/groups/{}/children/{}", s.class_a, r.child),
                Who::Person(s.director),
                200,
            )
        }),
    ];
    for (scenario, ending) in endings {
        let r = linked_guardian(&api, &s, "Vertrekkende Ouder").await;
        let probes = guardian_probes(r, s.id, Ends::All);
        all_granted(&api, r.who, &probes, scenario).await;
        let (method, path, by, status) = ending(&s, &r);
        end(&api, method, &path, by, status).await;
        failures.extend(none_granted(&api, r.who, &probes, scenario).await);
    }

    // A child moved to class B: the guardian leaves class A's audience and enters class B's;
    // class A's teacher no longer reaches the child; class A's parents no longer see the child.
    let r = linked_guardian(&api, &s, "Verhuizende Ouder").await;
    let guardian_group = guardian_probes(r, s.id, Ends::GroupOnly);
    let old_teacher = Reach {
        who: s.teacher,
        ..r
    };
    let teacher_child = staff_probes(old_teacher, Ends::ChildOnly);
    all_granted(&api, r.who, &guardian_group, "moved child's guardian").await;
    all_granted(&api, s.teacher, &teacher_child, "moved child's old teacher").await;
    let class_a_seen_by_parents = api
        .get(
            &format!("/v1/groups/{}", s.class_a),
            Who::Person(s.guardian),
        )
        .await;
    assert!(class_a_seen_by_parents
        .text()
        .contains(&r.child.to_string()));
    api.post(
        &format!("/v1/children/{}/move", r.child),
        Who::Person(s.teacher),
        json!({"group_id": s.class_b}),
    )
    .await
    .expect(200);
    failures.extend(none_granted(&api, r.who, &guardian_group, "moved child's guardian").await);
    failures
        .extend(none_granted(&api, s.teacher, &teacher_child, "moved child's old teacher").await);
    let class_a_after = api
        .get(
            &format!("/v1/groups/{}", s.class_a),
            Who::Person(s.guardian),
        )
        .await;
    if class_a_after.text().contains(&r.child.to_string()) {
        failures.push("class A's parents still see the moved child in the group".into());
    }
    // …and class B's post reaches the moved child's guardian.
    let media = School::upload(&api, Who::Person(s.other_teacher), "klasb").await;
    let posted = api
        .post(
            &format!("/v1/groups/{}/posts", s.class_b),
            Who::Person(s.other_teacher),
            json!({"body": "Welkom in groep 6b.", "media": [{"media_id": media, "tagged_children": [r.child]}]}),
        )
        .await;
    posted.expect(201);
    let feed = api.get("/v1/feed", Who::Person(r.who)).await;
    if !feed.text().contains(&posted.id("post_id").to_string()) {
        failures.push("the moved child's guardian does not see the new class's post".into());
    }

    // A new policy version rewords group_communication: a photo another family saw thanks to
    // a child's consent is withheld until a guardian decides again under the new meaning.
    let r = linked_guardian(&api, &s, "Toestemmende Ouder").await;
    api.put(
        &format!("/v1/children/{}/consents/group_communication", r.child),
        Who::Person(r.who),
        json!({"granted": true}),
    )
    .await
    .expect(200);
    let other_family = Who::Person(s.guardian);
    api.get(&format!("/v1/media/{}", r.media), other_family)
        .await
        .expect(200);
    let current = api
        .get(
            &format!("/v1/schools/{}/consent-policy", s.id),
            Who::Person(s.director),
        )
        .await;
    let mut purposes = current.expect(200)["purposes"].clone();
    for p in purposes.as_array_mut().expect("purposes") {
        if p["purpose"] == "group_communication" {
            p["description"] = json!("Foto's en video's in de klas-app, ook voor de jaarboeken.");
        }
    }
    api.post(
        &format!("/v1/schools/{}/consent-policy", s.id),
        Who::Person(s.director),
        json!({"purposes": purposes}),
    )
    .await
    .expect(201);
    let withheld = api
        .get(&format!("/v1/media/{}", r.media), other_family)
        .await;
    if withheld.status != 404 {
        failures.push(format!(
            "after a new policy version, the other family still gets the photo: {}",
            withheld.status
        ));
    }
    let consents = api
        .get(
            &format!("/v1/children/{}/consents", r.child),
            Who::Person(r.who),
        )
        .await;
    let group_communication = consents.expect(200)["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .find(|p| p["purpose"] == "group_communication")
        .cloned()
        .expect("group_communication");
    assert_eq!(
        (
            &group_communication["effective"],
            &group_communication["needs_decision"]
        ),
        (&json!(false), &json!(true))
    );
    api.put(
        &format!("/v1/children/{}/consents/group_communication", r.child),
        Who::Person(r.who),
        json!({"granted": true}),
    )
    .await
    .expect(200);
    api.get(&format!("/v1/media/{}", r.media), other_family)
        .await
        .expect(200);

    assert!(
        failures.is_empty(),
        "{} requests still granted after their relation ended:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_ends_when_the_relation_ends_on_sqlite() {
    access_ends_when_the_relation_ends(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_ends_when_the_relation_ends_on_postgres() {
    access_ends_when_the_relation_ends(Backend::Postgres).await;
}
