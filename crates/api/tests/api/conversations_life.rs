//! Conversations, quiet hours, notifications, absences and activities over real HTTP, on SQLite
//! files and on PostgreSQL: who may write to whom, what is held during quiet hours and released
//! after, the notice period of absences, full activities, and bad input that changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use crate::school_server;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use kring_api::exec::Loaded;
use kring_api::Caller;
use kring_domain::child::SCHOOL_TIME_ZONE;
use kring_domain::invitation::{self, InvitationAction, InvitationContext};
use kring_domain::school::{self, SchoolAction};
use kring_domain::{Actor, ChildId, Command, InvitationId, PersonId, SchoolId, StreamName};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// The shared HTTP fixture, with this suite's calls (by caller, checked for problem+json).
struct Api {
    server: school_server::Api,
}

impl std::ops::Deref for Api {
    type Target = school_server::Api;
    fn deref(&self) -> &Self::Target {
        &self.server
    }
}

/// An answer: status, content type, JSON body (`Null` when empty or not JSON).
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Answer {
    /// Asserts the status and, for errors, a problem+json body with `code`.
    fn expect(self, status: u16, code: Option<&str>) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        if let Some(code) = code {
            assert!(
                self.content_type.starts_with("application/problem+json"),
                "errors are problem+json, got {:?}",
                self.content_type
            );
            assert_eq!(self.body["code"], code, "problem: {}", self.body);
        }
        self.body
    }
}

impl Api {
    async fn sqlite() -> Self {
        Self {
            server: school_server::Api::sqlite().await,
        }
    }

    async fn postgres() -> Self {
        Self {
            server: school_server::Api::postgres("api_conversations").await,
        }
    }

    /// A request as `who` (no token for `None`), with a JSON body or a raw text body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        who: Option<Caller>,
        body: Option<Body>,
    ) -> Answer {
        let mut req = self.request(method, path);
        if let Some(who) = who {
            req = req.bearer_auth(self.token(who));
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Raw(text)) => req
                .header("content-type", "application/json")
                .body(text.to_owned()),
            None => req,
        };
        let answer = self.server.send(req).await;
        assert!(
            !answer.status.is_server_error(),
            "never a 5xx: {} for {path}: {}",
            answer.status,
            answer.text
        );
        Answer {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
        }
    }

    async fn get(&self, path: &str, who: Caller) -> Answer {
        self.send(Method::GET, path, Some(who), None).await
    }

    async fn post(&self, path: &str, who: Caller, body: Value) -> Answer {
        self.send(Method::POST, path, Some(who), Some(Body::Json(body)))
            .await
    }

    async fn put(&self, path: &str, who: Caller, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(who), Some(Body::Json(body)))
            .await
    }

    async fn delete(&self, path: &str, who: Caller) -> Answer {
        self.send(Method::DELETE, path, Some(who), None).await
    }
}

enum Body {
    Json(Value),
    Raw(&'static str),
}

fn id(v: &Value, field: &str) -> Uuid {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .parse()
        .unwrap()
}

fn person(v: &Value, field: &str) -> Caller {
    Caller::Person(PersonId::from_uuid(id(v, field)))
}

fn person_id(c: Caller) -> PersonId {
    c.person().unwrap()
}

/// One school with two class groups: a director, a teacher per group; in group 5a Sem (mum and
/// dad) and Noor (her mother); in group 6b Daan (his father). Another school with a teacher.
struct School {
    group: Uuid,
    other_group: Uuid,
    director: Caller,
    teacher: Caller,
    other_teacher: Caller,
    sem: Uuid,
    mum: Caller,
    dad: Caller,
    noors_mother: Caller,
    daans_father: Caller,
    stranger: Caller,
}

/// Invites, accepts, approves and links a guardian by writing the invitation's events through
/// the executor with the domain's actions (as `World::invite_and_link` does).
async fn link_guardian(api: &Api, staff: Caller, school_id: SchoolId, child: Uuid) -> Caller {
    let exec = &api.running.state.exec;
    let child_id = ChildId::from_uuid(child);
    let invitation_id = InvitationId::generate();
    let guardian = PersonId::generate();
    let stream = StreamName::invitation(invitation_id);
    let roster = exec.school(school_id).await.unwrap();
    let run = |actor: Actor, action: InvitationAction| {
        let roster: Loaded<std::sync::Arc<school::School>> = roster.clone();
        async move {
            exec.run::<invitation::Invitation, _>(stream, actor, Uuid::now_v7(), |s, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: &roster.state,
                    },
                    Command::new(actor, action.clone()),
                    now,
                )
            })
            .await
            .unwrap()
        }
    };
    run(
        staff.actor(),
        InvitationAction::Invite {
            invitation_id,
            child_id,
            email: format!("{guardian}@mail.example"),
            invitee_id: guardian,
            code_digest: "digest-of-the-code".into(),
            mail_code: None,
        },
    )
    .await;
    run(
        Actor::Person(guardian),
        InvitationAction::Accept {
            code_digest: "digest-of-the-code".into(),
            display_name: "Ouder".into(),
        },
    )
    .await;
    run(staff.actor(), InvitationAction::Approve { child_id: None }).await;
    let approved = exec
        .load::<invitation::Invitation>(&stream)
        .await
        .unwrap()
        .state;
    exec.run_school(school_id, staff.actor(), Uuid::now_v7(), |roster, now| {
        school::decide(
            roster,
            Command::new(
                staff.actor(),
                SchoolAction::LinkGuardian {
                    invitation: approved.clone(),
                },
            ),
            now,
        )
    })
    .await
    .unwrap();
    Caller::Person(guardian)
}

async fn school(api: &Api) -> School {
    let op = Caller::Operator;
    let created = api
        .post(
            "/v1/schools",
            op,
            json!({"name": "De Regenboog", "brin": "12AB"}),
        )
        .await
        .expect(201, None);
    let school_id = SchoolId::from_uuid(id(&created, "school_id"));
    let staff = |name: &str, role: &str| json!({"display_name": name, "email": format!("{}@school.example", name.replace(' ', ".")), "role": role});
    let staff_path = format!("/v1/schools/{school_id}/staff");
    let director = person(
        &api.post(&staff_path, op, staff("Directeur", "director"))
            .await
            .expect(201, None),
        "person_id",
    );
    let teacher = person(
        &api.post(&staff_path, op, staff("Juf Anna", "teacher"))
            .await
            .expect(201, None),
        "person_id",
    );
    let other_teacher = person(
        &api.post(&staff_path, op, staff("Meester Bram", "teacher"))
            .await
            .expect(201, None),
        "person_id",
    );
    let groups = format!("/v1/schools/{school_id}/groups");
    let group = id(
        &api.post(&groups, director, json!({"name": "Groep 5a"}))
            .await
            .expect(201, None),
        "group_id",
    );
    let other_group = id(
        &api.post(&groups, director, json!({"name": "Groep 6b"}))
            .await
            .expect(201, None),
        "group_id",
    );
    for (g, t) in [(group, teacher), (other_group, other_teacher)] {
        api.post(
            &format!("/v1/groups/{g}/staff"),
            director,
            json!({"person_id": person_id(t).as_uuid()}),
        )
        .await
        .expect(200, None);
    }
    let enroll = |g: Uuid, t: Caller, name: &'static str| async move {
        id(
            &api.post(
                &format!("/v1/groups/{g}/children"),
                t,
                json!({"first_name": name, "last_initial": "V"}),
            )
            .await
            .expect(201, None),
            "child_id",
        )
    };
    let sem = enroll(group, teacher, "Sem").await;
    let noor = enroll(group, teacher, "Noor").await;
    let daan = enroll(other_group, other_teacher, "Daan").await;
    let mum = link_guardian(api, teacher, school_id, sem).await;
    let dad = link_guardian(api, teacher, school_id, sem).await;
    let noors_mother = link_guardian(api, teacher, school_id, noor).await;
    let daans_father = link_guardian(api, other_teacher, school_id, daan).await;

    let elsewhere = api
        .post(
            "/v1/schools",
            op,
            json!({"name": "De Linde", "brin": "34CD"}),
        )
        .await
        .expect(201, None);
    let stranger = person(
        &api.post(
            &format!("/v1/schools/{}/staff", id(&elsewhere, "school_id")),
            op,
            staff("Juf Elders", "teacher"),
        )
        .await
        .expect(201, None),
        "person_id",
    );
    School {
        group,
        other_group,
        director,
        teacher,
        other_teacher,
        sem,
        mum,
        dad,
        noors_mother,
        daans_father,
        stranger,
    }
}

/// `?min_position=` for the log's head: read your writes.
async fn at_head(api: &Api) -> String {
    format!("min_position={}", api.head().await)
}

fn uuid_of(c: Caller) -> Uuid {
    person_id(c).as_uuid()
}

async fn a_teacher_and_a_guardian_converse_and_nobody_else_reads_along(api: Api) {
    let s = school(&api).await;
    let started = api
        .post(
            "/v1/conversations",
            s.mum,
            json!({"child_id": s.sem, "body": "Mag Sem morgen eerder weg?"}),
        )
        .await
        .expect(201, None);
    let conversation = id(&started, "conversation_id");
    assert!(started["position"].as_u64().unwrap() > 0);

    // The teacher of Sem's group is reached by default and sees it in their inbox, opened.
    let inbox = api
        .get(
            &format!("/v1/conversations?{}", at_head(&api).await),
            s.teacher,
        )
        .await
        .expect(200, None);
    let listed = &inbox["conversations"];
    assert_eq!(listed.as_array().unwrap().len(), 1, "{inbox}");
    assert_eq!(id(&listed[0], "conversation_id"), conversation);
    assert_eq!(id(&listed[0], "child_id"), s.sem);
    assert_eq!(
        listed[0]["last_message"]["body"],
        "Mag Sem morgen eerder weg?"
    );
    let mut participants: Vec<(Uuid, String)> = listed[0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                id(p, "person_id"),
                p["display_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    participants.sort();
    let mut expected = vec![
        (uuid_of(s.mum), "Ouder".to_owned()),
        (uuid_of(s.teacher), "Juf Anna".to_owned()),
    ];
    expected.sort();
    assert_eq!(participants, expected, "mum and the teacher, by name");
    assert!(
        !inbox.to_string().contains('@'),
        "no e-mail address in an inbox: {inbox}"
    );

    let messages_path = format!("/v1/conversations/{conversation}/messages");
    let reply = api
        .post(&messages_path, s.teacher, json!({"body": "Dat is goed."}))
        .await
        .expect(201, None);
    assert!(reply["position"].as_u64().unwrap() > started["position"].as_u64().unwrap());

    let read = api
        .get(&format!("{messages_path}?{}", at_head(&api).await), s.mum)
        .await
        .expect(200, None);
    let bodies: Vec<&str> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Mag Sem morgen eerder weg?", "Dat is goed."]);
    assert_eq!(read["next_before"], Value::Null);
    assert_eq!(id(&read["messages"][1], "author_id"), uuid_of(s.teacher));

    // Paging back, one message at a time: the latest first.
    let page = api
        .get(&format!("{messages_path}?limit=1"), s.mum)
        .await
        .expect(200, None);
    assert_eq!(page["messages"][0]["body"], "Dat is goed.");
    let before = page["next_before"].as_u64().expect("an older page exists");
    let older = api
        .get(&format!("{messages_path}?limit=1&before={before}"), s.mum)
        .await
        .expect(200, None);
    assert_eq!(older["messages"][0]["body"], "Mag Sem morgen eerder weg?");
    assert_eq!(older["next_before"], Value::Null);

    // Anyone who does not take part gets 404, as if it did not exist: dad, another parent,
    // the teacher of another group, the director, the operator.
    for outsider in [
        s.dad,
        s.noors_mother,
        s.other_teacher,
        s.director,
        Caller::Operator,
    ] {
        api.get(&messages_path, outsider)
            .await
            .expect(404, Some("not_found"));
    }
    let head = api.head().await;
    api.post(&messages_path, s.dad, json!({"body": "Ik lees mee"}))
        .await
        .expect(404, Some("not_found"));
    api.get(
        &format!("/v1/conversations/{}/messages", Uuid::now_v7()),
        s.mum,
    )
    .await
    .expect(404, Some("not_found"));
    assert_eq!(api.head().await, head, "nothing written");

    // Staff reach both guardians by default; dad's inbox holds only that conversation.
    let to_parents = api
        .post(
            "/v1/conversations",
            s.teacher,
            json!({"child_id": s.sem, "body": "Sem heeft zijn gymtas laten liggen."}),
        )
        .await
        .expect(201, None);
    let dads = api
        .get(&format!("/v1/conversations?{}", at_head(&api).await), s.dad)
        .await
        .expect(200, None);
    let ids: Vec<Uuid> = dads["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| id(c, "conversation_id"))
        .collect();
    assert_eq!(ids, vec![id(&to_parents, "conversation_id")]);
    // The teacher's inbox pages newest first.
    let first = api
        .get("/v1/conversations?limit=1", s.teacher)
        .await
        .expect(200, None);
    assert_eq!(
        id(&first["conversations"][0], "conversation_id"),
        id(&to_parents, "conversation_id")
    );
    let next = first["next_before"].as_u64().unwrap();
    let second = api
        .get(
            &format!("/v1/conversations?limit=1&before={next}"),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(
        id(&second["conversations"][0], "conversation_id"),
        conversation
    );
    assert_eq!(second["next_before"], Value::Null);
}

async fn a_parent_cannot_message_another_parent_and_nothing_is_written(api: Api) {
    let s = school(&api).await;
    let head = api.head().await;
    // Mum names Noor's mother as the other participant.
    api.post(
        "/v1/conversations",
        s.mum,
        json!({"child_id": s.sem, "participants": [uuid_of(s.noors_mother)], "body": "Hoi!"}),
    )
    .await
    .expect(422, Some("rule_violated"));
    // Nor with Sem's dad alone: a conversation needs staff.
    api.post(
        "/v1/conversations",
        s.mum,
        json!({"child_id": s.sem, "participants": [uuid_of(s.dad)], "body": "Hoi!"}),
    )
    .await
    .expect(422, Some("rule_violated"));
    // Noor's mother cannot start one about Sem: the child is not hers to know.
    api.post(
        "/v1/conversations",
        s.noors_mother,
        json!({"child_id": s.sem, "body": "Hoi!"}),
    )
    .await
    .expect(404, Some("not_found"));
    // The operator takes no part in conversations.
    api.post(
        "/v1/conversations",
        Caller::Operator,
        json!({"child_id": s.sem, "body": "Hoi!"}),
    )
    .await
    .expect(403, Some("forbidden"));
    assert_eq!(api.head().await, head, "nothing written");
    for parent in [s.mum, s.dad, s.noors_mother] {
        let inbox = api
            .get(
                &format!("/v1/conversations?{}", at_head(&api).await),
                parent,
            )
            .await
            .expect(200, None);
        assert_eq!(inbox["conversations"], json!([]));
    }
}

async fn conversation_bad_input_is_refused_and_changes_nothing(api: Api) {
    let s = school(&api).await;
    let head = api.head().await;
    let crowd: Vec<Uuid> = (0..=kring_domain::conversation::MAX_PARTICIPANTS)
        .map(|_| Uuid::now_v7())
        .collect();
    let bad: [(Value, u16, &str); 6] = [
        (json!({"child_id": s.sem}), 422, "validation_failed"),
        (
            json!({"child_id": s.sem, "body": "Hoi", "participants": crowd}),
            422,
            "validation_failed",
        ),
        (json!({"body": "Hoi"}), 422, "validation_failed"),
        (
            json!({"child_id": "not-a-uuid", "body": "Hoi"}),
            422,
            "validation_failed",
        ),
        (
            json!({"child_id": s.sem, "body": "   "}),
            422,
            "validation_failed",
        ),
        (
            json!({"child_id": Uuid::now_v7(), "body": "Hoi"}),
            404,
            "not_found",
        ),
    ];
    for (body, status, code) in bad {
        api.post("/v1/conversations", s.mum, body)
            .await
            .expect(status, Some(code));
    }
    api.send(
        Method::POST,
        "/v1/conversations",
        Some(s.mum),
        Some(Body::Raw("{not json")),
    )
    .await
    .expect(400, Some("bad_request"));
    api.get("/v1/conversations/not-a-uuid/messages", s.mum)
        .await
        .expect(400, Some("bad_request"));
    api.get("/v1/conversations?limit=0", s.mum)
        .await
        .expect(422, Some("validation_failed"));
    api.get("/v1/conversations?limit=lots", s.mum)
        .await
        .expect(400, Some("bad_request"));
    api.send(Method::GET, "/v1/conversations", None, None)
        .await
        .expect(401, Some("unauthenticated"));
    assert_eq!(api.head().await, head, "nothing written");
}

/// A quiet period in UTC from an hour ago to an hour from now (minutes), and its end.
fn quiet_now() -> (Value, DateTime<Utc>) {
    let now = Utc::now();
    let start = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
        - Duration::hours(1);
    let end = start + Duration::hours(2);
    let day = match start.weekday() {
        chrono::Weekday::Mon => "monday",
        chrono::Weekday::Tue => "tuesday",
        chrono::Weekday::Wed => "wednesday",
        chrono::Weekday::Thu => "thursday",
        chrono::Weekday::Fri => "friday",
        chrono::Weekday::Sat => "saturday",
        chrono::Weekday::Sun => "sunday",
    };
    let schedule = json!({
        "timezone": "UTC",
        "weekly": [{
            "day": day,
            "start": start.format("%H:%M").to_string(),
            "end": end.format("%H:%M").to_string(),
        }]
    });
    (schedule, end)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn notification_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["notification_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_message_in_quiet_hours_is_held_until_they_end_then_released(api: Api) {
    let s = school(&api).await;
    let (schedule, until) = quiet_now();
    api.put("/v1/me/quiet-hours", s.teacher, schedule.clone())
        .await
        .expect(200, None);
    let mine = api
        .get("/v1/me/quiet-hours", s.teacher)
        .await
        .expect(200, None);
    assert_eq!(mine["quiet_hours"], schedule);

    // Parents of the school see that the teacher is in quiet hours, and until when.
    let availability = format!("/v1/people/{}/availability", uuid_of(s.teacher));
    for parent in [s.mum, s.daans_father] {
        let a = api
            .get(&format!("{availability}?{}", at_head(&api).await), parent)
            .await
            .expect(200, None);
        assert_eq!(a["in_quiet_hours"], true, "{a}");
        assert_eq!(
            a["until"]
                .as_str()
                .map(|u| u.parse::<DateTime<Utc>>().unwrap()),
            Some(until)
        );
    }
    // Someone of another school does not learn of the teacher at all.
    api.get(&availability, s.stranger)
        .await
        .expect(404, Some("not_found"));
    let dads = api
        .get(
            &format!("/v1/people/{}/availability", uuid_of(s.dad)),
            s.mum,
        )
        .await
        .expect(200, None);
    assert_eq!(
        dads["in_quiet_hours"], false,
        "guardians have no quiet hours"
    );

    // Mum writes now: the message arrives, the teacher's notification is held.
    let started = api
        .post(
            "/v1/conversations",
            s.mum,
            json!({"child_id": s.sem, "body": "Sem is zijn jas vergeten."}),
        )
        .await
        .expect(201, None);
    let message = id(&started, "message_id");
    let conversation = id(&started, "conversation_id");
    let now = api
        .get(
            &format!("/v1/me/notifications?{}", at_head(&api).await),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(now["due"], json!([]), "{now}");
    let held = now["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{now}");
    assert_eq!(id(&held[0], "message_id"), message);
    assert_eq!(id(&held[0], "conversation_id"), conversation);
    assert_eq!(held[0]["held_for_quiet_hours"], true);
    assert_eq!(
        held[0]["release_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        until
    );
    assert!(
        !now.to_string().contains("jas"),
        "notifications carry no text"
    );
    let held_id = held[0]["notification_id"].as_str().unwrap().to_owned();
    // The message itself is there to read.
    let read = api
        .get(
            &format!("/v1/conversations/{conversation}/messages"),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(read["messages"][0]["body"], "Sem is zijn jas vergeten.");

    // A second before the quiet period ends it is still held; at its end it is due.
    let just_before = api
        .get(
            &format!(
                "/v1/me/notifications?as_of={}",
                rfc3339(until - Duration::seconds(1))
            ),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(
        notification_ids(&just_before["held"]),
        vec![held_id.clone()]
    );
    assert_eq!(just_before["due"], json!([]));
    let after = api
        .get(
            &format!("/v1/me/notifications?as_of={}", rfc3339(until)),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(notification_ids(&after["due"]), vec![held_id.clone()]);
    assert_eq!(after["held"], json!([]));

    // The teacher's reply reaches mum at once: guardians have no quiet hours.
    let reply = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            s.teacher,
            json!({"body": "Ik leg hem bij de ingang."}),
        )
        .await
        .expect(201, None);
    let mums = api
        .get(
            &format!("/v1/me/notifications?{}", at_head(&api).await),
            s.mum,
        )
        .await
        .expect(200, None);
    // Her messages (her approved invitation notified her too, earlier).
    let due: Vec<&Value> = mums["due"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "message")
        .collect();
    assert_eq!(due.len(), 1, "{mums}");
    assert_eq!(id(due[0], "message_id"), id(&reply, "message_id"));
    assert_eq!(due[0]["held_for_quiet_hours"], false);
    assert_eq!(mums["held"], json!([]));

    // Only the recipient acknowledges; after that it is not listed again.
    api.post(
        "/v1/me/notifications/delivered",
        s.mum,
        json!({"notification_ids": [held_id]}),
    )
    .await
    .expect(404, Some("not_found"));
    for bad in [
        json!({"notification_ids": ["nonsense"]}),
        json!({"notification_ids": []}),
        json!({}),
    ] {
        api.post("/v1/me/notifications/delivered", s.teacher, bad)
            .await
            .expect(422, Some("validation_failed"));
    }
    let marked = api
        .post(
            "/v1/me/notifications/delivered",
            s.teacher,
            json!({"notification_ids": [held_id]}),
        )
        .await
        .expect(200, None);
    assert_eq!(marked["marked"], 1);
    let again = api
        .post(
            "/v1/me/notifications/delivered",
            s.teacher,
            json!({"notification_ids": [held_id]}),
        )
        .await
        .expect(200, None);
    assert_eq!(again["marked"], 0, "acknowledging twice counts once");
    let acknowledged = api
        .get(
            &format!("/v1/me/notifications?as_of={}", rfc3339(until)),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(acknowledged["due"], json!([]));
    assert_eq!(acknowledged["held"], json!([]));

    // Quiet hours cleared: the teacher is available and told at once.
    api.delete("/v1/me/quiet-hours", s.teacher)
        .await
        .expect(200, None);
    api.delete("/v1/me/quiet-hours", s.teacher)
        .await
        .expect(409, Some("conflict"));
    let a = api
        .get(&format!("{availability}?{}", at_head(&api).await), s.mum)
        .await
        .expect(200, None);
    assert_eq!(a["in_quiet_hours"], false);
    assert_eq!(a["until"], Value::Null);
    let later = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            s.mum,
            json!({"body": "Dank je!"}),
        )
        .await
        .expect(201, None);
    let now = api
        .get(
            &format!("/v1/me/notifications?{}", at_head(&api).await),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(now["held"], json!([]));
    let due: Vec<Uuid> = now["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| id(n, "message_id"))
        .collect();
    assert_eq!(due, vec![id(&later, "message_id")]);
}

async fn quiet_hours_bad_input_is_refused_and_changes_nothing(api: Api) {
    let s = school(&api).await;
    let head = api.head().await;
    let period = |day: &str, start: &str, end: &str| json!({"timezone": "Europe/Amsterdam", "weekly": [{"day": day, "start": start, "end": end}]});
    let bad = [
        period("funday", "18:00", "07:30"),
        period("monday", "25:00", "07:30"),
        period("monday", "18:00", "half past seven"),
        period("monday", "18:00", "18:00"),
        json!({"timezone": "Mars/Olympus", "weekly": []}),
        json!({"timezone": "Europe/Amsterdam"}),
        json!({"weekly": []}),
        json!({"timezone": "Europe/Amsterdam", "weekly": [{"day": "monday", "start": "18:00"}]}),
    ];
    for body in bad {
        api.put("/v1/me/quiet-hours", s.teacher, body)
            .await
            .expect(422, Some("validation_failed"));
    }
    api.send(
        Method::PUT,
        "/v1/me/quiet-hours",
        Some(s.teacher),
        Some(Body::Raw(r#"{"timezone": "UTC", "weekly": ["#)),
    )
    .await
    .expect(400, Some("bad_request"));
    // Quiet hours are for staff.
    for not_staff in [s.mum, Caller::Operator] {
        api.put(
            "/v1/me/quiet-hours",
            not_staff,
            period("monday", "18:00", "07:30"),
        )
        .await
        .expect(403, Some("forbidden"));
    }
    api.get("/v1/people/not-a-uuid/availability", s.mum)
        .await
        .expect(400, Some("bad_request"));
    api.get(
        &format!("/v1/people/{}/availability", Uuid::now_v7()),
        s.mum,
    )
    .await
    .expect(404, Some("not_found"));
    api.get("/v1/me/notifications?as_of=yesterday", s.teacher)
        .await
        .expect(400, Some("bad_request"));
    assert_eq!(api.head().await, head, "nothing written");
    // A good schedule with midnight written as 24:00 reads back as 00:00.
    api.put(
        "/v1/me/quiet-hours",
        s.teacher,
        period("friday", "18:00", "24:00"),
    )
    .await
    .expect(200, None);
    let mine = api
        .get("/v1/me/quiet-hours", s.teacher)
        .await
        .expect(200, None);
    assert_eq!(mine["quiet_hours"]["weekly"][0]["end"], "00:00");
}

fn today() -> NaiveDate {
    Utc::now().with_timezone(&SCHOOL_TIME_ZONE).date_naive()
}

async fn an_absence_needs_a_days_notice_and_its_reason_is_for_the_groups_staff(api: Api) {
    let s = school(&api).await;
    let path = format!("/v1/children/{}/absences", s.sem);
    let head = api.head().await;
    let short = api
        .post(
            &path,
            s.mum,
            json!({"from": today(), "to": today(), "reason": "Bruiloft van tante"}),
        )
        .await
        .expect(422, Some("rule_violated"));
    assert!(
        short["detail"].as_str().unwrap().contains("notice"),
        "{short}"
    );
    assert_eq!(api.head().await, head, "nothing written");

    let from = today() + Duration::days(2);
    let to = from + Duration::days(1);
    let reported = api
        .post(
            &path,
            s.mum,
            json!({"from": from, "to": to, "reason": "Bruiloft van tante"}),
        )
        .await
        .expect(201, None);
    let absence = id(&reported, "absence_id");

    let list = |day: NaiveDate| format!("/v1/groups/{}/absences?date={day}", s.group);
    let on_day = api
        .get(
            &format!("{}&{}", list(from), at_head(&api).await),
            s.teacher,
        )
        .await
        .expect(200, None);
    let absences = on_day["absences"].as_array().unwrap();
    assert_eq!(absences.len(), 1, "{on_day}");
    assert_eq!(id(&absences[0], "absence_id"), absence);
    assert_eq!(id(&absences[0], "child_id"), s.sem);
    assert_eq!(absences[0]["first_name"], "Sem");
    assert_eq!(absences[0]["reason"], "Bruiloft van tante");
    assert_eq!(id(&absences[0], "reported_by"), uuid_of(s.mum));
    // The director oversees every group; the last day counts, the day after does not.
    let directors = api.get(&list(to), s.director).await.expect(200, None);
    assert_eq!(directors["absences"].as_array().unwrap().len(), 1);
    let after = api
        .get(&list(to + Duration::days(1)), s.teacher)
        .await
        .expect(200, None);
    assert_eq!(after["absences"], json!([]));
    // Parents and the staff of other groups do not see the list.
    for not_staff in [s.mum, s.other_teacher, s.noors_mother] {
        api.get(&list(from), not_staff)
            .await
            .expect(403, Some("forbidden"));
    }

    // Only a guardian reports; a child of someone else is not there to know of.
    let head = api.head().await;
    let later = json!({"from": from, "to": to, "reason": "Op vakantie"});
    api.post(&path, s.teacher, later.clone())
        .await
        .expect(403, Some("forbidden"));
    api.post(&path, s.daans_father, later.clone())
        .await
        .expect(404, Some("not_found"));
    api.post(&path, s.stranger, later.clone())
        .await
        .expect(404, Some("not_found"));
    assert_eq!(api.head().await, head, "nothing written");

    // Cancelled, it leaves the list.
    api.delete(&format!("{path}/{absence}"), s.mum)
        .await
        .expect(200, None);
    api.delete(&format!("{path}/{absence}"), s.mum)
        .await
        .expect(409, Some("conflict"));
    let cancelled = api
        .get(
            &format!("{}&{}", list(from), at_head(&api).await),
            s.teacher,
        )
        .await
        .expect(200, None);
    assert_eq!(cancelled["absences"], json!([]));
}

async fn absence_bad_input_is_refused_and_changes_nothing(api: Api) {
    let s = school(&api).await;
    let path = format!("/v1/children/{}/absences", s.sem);
    let from = today() + Duration::days(3);
    let head = api.head().await;
    let bad: [(Value, &str); 6] = [
        (
            json!({"from": "2026-13-01", "to": from, "reason": "x"}),
            "validation_failed",
        ),
        (
            json!({"from": "next week", "to": from, "reason": "x"}),
            "validation_failed",
        ),
        (json!({"from": from, "to": from}), "validation_failed"),
        (json!({"to": from, "reason": "x"}), "validation_failed"),
        (
            json!({"from": from, "to": from - Duration::days(1), "reason": "x"}),
            "validation_failed",
        ),
        (
            json!({"from": from, "to": from + Duration::days(60), "reason": "x"}),
            "validation_failed",
        ),
    ];
    for (body, code) in bad {
        api.post(&path, s.mum, body).await.expect(422, Some(code));
    }
    api.post(
        "/v1/children/not-a-child/absences",
        s.mum,
        json!({"from": from, "to": from, "reason": "x"}),
    )
    .await
    .expect(400, Some("bad_request"));
    api.post(
        &format!("/v1/children/{}/absences", Uuid::now_v7()),
        s.mum,
        json!({"from": from, "to": from, "reason": "x"}),
    )
    .await
    .expect(404, Some("not_found"));
    api.get(
        &format!("/v1/groups/{}/absences?date=31-12-2026", s.group),
        s.teacher,
    )
    .await
    .expect(400, Some("bad_request"));
    api.get(
        &format!("/v1/groups/{}/absences", Uuid::now_v7()),
        s.teacher,
    )
    .await
    .expect(404, Some("not_found"));
    api.delete(&format!("{path}/{}", Uuid::now_v7()), s.mum)
        .await
        .expect(404, Some("not_found"));
    assert_eq!(api.head().await, head, "nothing written");
    // Today's list is there without a date.
    api.get(&format!("/v1/groups/{}/absences", s.group), s.teacher)
        .await
        .expect(200, None);
}

async fn a_full_activity_answers_409_and_a_slot_is_never_overbooked(api: Api) {
    let s = school(&api).await;
    let starts = Utc::now() + Duration::days(7);
    let created = api
        .post(
            &format!("/v1/groups/{}/activities", s.group),
            s.teacher,
            json!({
                "title": "Uitje naar de kinderboerderij",
                "starts_at": rfc3339(starts),
                "ends_at": rfc3339(starts + Duration::hours(3)),
                "volunteer_slots": 1
            }),
        )
        .await
        .expect(201, None);
    let activity = id(&created, "activity_id");
    let volunteers = format!("/v1/activities/{activity}/volunteers");

    api.post(&volunteers, s.mum, json!({}))
        .await
        .expect(201, None);
    let head = api.head().await;
    for late in [s.dad, s.noors_mother] {
        api.post(&volunteers, late, json!({}))
            .await
            .expect(409, Some("conflict"));
    }
    api.post(&volunteers, s.mum, json!({}))
        .await
        .expect(409, Some("conflict"));
    // A parent of another group is not in this one.
    api.post(&volunteers, s.daans_father, json!({}))
        .await
        .expect(403, Some("forbidden"));
    assert_eq!(api.head().await, head, "nothing written");

    let calendar = format!("/v1/groups/{}/activities", s.group);
    let seen = api
        .get(&format!("{calendar}?{}", at_head(&api).await), s.dad)
        .await
        .expect(200, None);
    let a = &seen["activities"][0];
    assert_eq!(id(a, "activity_id"), activity);
    assert_eq!(a["title"], "Uitje naar de kinderboerderij");
    assert_eq!(
        (
            a["volunteer_slots"].as_u64(),
            a["taken"].as_u64(),
            a["free"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(a["volunteers"], json!([uuid_of(s.mum)]));
    assert_eq!(a["you_volunteer"], false);
    let mums = api.get(&calendar, s.mum).await.expect(200, None);
    assert_eq!(mums["activities"][0]["you_volunteer"], true);
    api.get(&calendar, s.teacher).await.expect(200, None);
    for outsider in [s.daans_father, s.other_teacher, s.stranger] {
        api.get(&calendar, outsider)
            .await
            .expect(403, Some("forbidden"));
    }

    // Mum gives her slot back; dad takes it.
    api.delete(&format!("{volunteers}/me"), s.mum)
        .await
        .expect(200, None);
    api.delete(&format!("{volunteers}/me"), s.mum)
        .await
        .expect(422, Some("rule_violated"));
    api.post(&volunteers, s.dad, json!({}))
        .await
        .expect(201, None);
    let after = api
        .get(&format!("{calendar}?{}", at_head(&api).await), s.dad)
        .await
        .expect(200, None);
    assert_eq!(
        after["activities"][0]["volunteers"],
        json!([uuid_of(s.dad)])
    );

    // Cancelled by staff: no more sign-ups.
    api.delete(&format!("/v1/activities/{activity}"), s.mum)
        .await
        .expect(403, Some("forbidden"));
    api.delete(&format!("/v1/activities/{activity}"), s.teacher)
        .await
        .expect(200, None);
    api.delete(&format!("{volunteers}/me"), s.dad)
        .await
        .expect(422, Some("validation_failed"));
    let cancelled = api
        .get(&format!("{calendar}?{}", at_head(&api).await), s.dad)
        .await
        .expect(200, None);
    assert_eq!(cancelled["activities"][0]["cancelled"], true);
}

async fn activity_bad_input_is_refused_and_changes_nothing(api: Api) {
    let s = school(&api).await;
    let path = format!("/v1/groups/{}/activities", s.group);
    let starts = Utc::now() + Duration::days(7);
    let good = json!({
        "title": "Sportdag",
        "starts_at": rfc3339(starts),
        "ends_at": rfc3339(starts + Duration::hours(3)),
        "volunteer_slots": 4
    });
    let with = |field: &str, value: Value| {
        let mut v = good.clone();
        v[field] = value;
        v
    };
    let without = |field: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    let head = api.head().await;
    for body in [
        with("starts_at", json!("tomorrow")),
        with("ends_at", json!(rfc3339(starts - Duration::hours(1)))),
        with("volunteer_slots", json!(-1)),
        with("volunteer_slots", json!(1000)),
        with("volunteer_slots", json!("four")),
        with("title", json!("")),
        without("title"),
        without("ends_at"),
    ] {
        api.post(&path, s.teacher, body)
            .await
            .expect(422, Some("validation_failed"));
    }
    // Only the group's staff schedule.
    for not_staff in [s.mum, s.other_teacher, Caller::Operator] {
        api.post(&path, not_staff, good.clone())
            .await
            .expect(403, Some("forbidden"));
    }
    api.post(
        &format!("/v1/groups/{}/activities", Uuid::now_v7()),
        s.teacher,
        good.clone(),
    )
    .await
    .expect(404, Some("not_found"));
    api.post(
        &format!("/v1/activities/{}/volunteers", Uuid::now_v7()),
        s.mum,
        json!({}),
    )
    .await
    .expect(404, Some("not_found"));
    api.post("/v1/activities/nope/volunteers", s.mum, json!({}))
        .await
        .expect(400, Some("bad_request"));
    assert_eq!(api.head().await, head, "nothing written");
    // Daan's father sees his own group's calendar.
    let his = format!("/v1/groups/{}/activities", s.other_group);
    api.get(&his, s.daans_father).await.expect(200, None);
}

async fn the_openapi_document_covers_these_routes(api: Api) {
    let doc = api
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200, None);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/conversations", "post"),
        ("/v1/conversations", "get"),
        ("/v1/conversations/{conversation_id}/messages", "post"),
        ("/v1/conversations/{conversation_id}/messages", "get"),
        ("/v1/me/quiet-hours", "put"),
        ("/v1/people/{person_id}/availability", "get"),
        ("/v1/me/notifications", "get"),
        ("/v1/me/notifications/delivered", "post"),
        ("/v1/children/{child_id}/absences", "post"),
        ("/v1/groups/{group_id}/absences", "get"),
        ("/v1/groups/{group_id}/activities", "post"),
        ("/v1/groups/{group_id}/activities", "get"),
        ("/v1/activities/{activity_id}/volunteers", "post"),
        ("/v1/activities/{activity_id}/volunteers/me", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "NewConversation",
        "QuietHoursDoc",
        "NotificationsDoc",
        "NewAbsence",
        "ActivityDoc",
    ] {
        assert!(schemas.contains_key(schema), "{schema} is documented");
    }
}

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: |_| Api::postgres();
    a_teacher_and_a_guardian_converse_and_nobody_else_reads_along,
    a_parent_cannot_message_another_parent_and_nothing_is_written,
    conversation_bad_input_is_refused_and_changes_nothing,
    a_message_in_quiet_hours_is_held_until_they_end_then_released,
    quiet_hours_bad_input_is_refused_and_changes_nothing,
    an_absence_needs_a_days_notice_and_its_reason_is_for_the_groups_staff,
    absence_bad_input_is_refused_and_changes_nothing,
    a_full_activity_answers_409_and_a_slot_is_never_overbooked,
    activity_bad_input_is_refused_and_changes_nothing,
    the_openapi_document_covers_these_routes,
);
