//! The full life of a class, through the public HTTP API of the real binary: a school, its staff,
//! a class with children, parents invited, accepting and approved, consents, a post with tagged
//! photos and its warnings, who may see each photo, a withdrawal hiding a photo from exactly the
//! right parents, removals, a conversation, a quiet-hours hold, an absence refused for short
//! notice, a full activity, an export and an erasure — on SQLite files and on PostgreSQL.
//!
//! Every read passes `?min_position=` with the highest position a write answered so far, so it
//! reads its own writes without waiting on the clock.

use crate::harness::{uuid_at, Backend, Body, Server, Who};
use crate::school::{photo, school_today};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

fn who(p: Uuid) -> Who {
    Who::Person(p)
}

/// The photo bytes a parent gets, or the refusal's status.
async fn bytes_of(api: &Server, as_: Uuid, media: Uuid) -> Result<Vec<u8>, u16> {
    let answer = api.get(&format!("/v1/media/{media}"), who(as_)).await;
    match answer.status {
        200 => Ok(answer.bytes),
        404 => {
            answer.problem(404, "not_found");
            Err(404)
        }
        other => panic!("{}: {other} {}", answer.request, answer.text()),
    }
}

/// The media of `post` in `as_`'s feed; `None` when the post is not in it.
async fn feed_media(api: &Server, as_: Uuid, post: Uuid) -> Option<Vec<Uuid>> {
    let feed = api.get("/v1/feed", who(as_)).await;
    feed.expect(200)["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .find(|p| uuid_at(p, "post_id") == post)
        .map(|p| {
            p["media"]
                .as_array()
                .expect("media")
                .iter()
                .map(|m| uuid_at(m, "media_id"))
                .collect()
        })
}

/// Who may see a media item, as `as_` is told: viewers with their reason, and the withheld with
/// the (child, purpose) pairs that withhold it.
async fn viewers(
    api: &Server,
    as_: Who,
    media: Uuid,
) -> (BTreeMap<Uuid, String>, BTreeMap<Uuid, Vec<(Uuid, String)>>) {
    let answer = api.get(&format!("/v1/media/{media}/viewers"), as_).await;
    let body = answer.expect(200);
    let viewers = body["viewers"]
        .as_array()
        .expect("viewers")
        .iter()
        .map(|v| {
            (
                uuid_at(v, "person_id"),
                v["reason"].as_str().expect("a reason").to_owned(),
            )
        })
        .collect();
    let withheld = body["withheld"]
        .as_array()
        .expect("withheld")
        .iter()
        .map(|w| {
            let because = w["because"]
                .as_array()
                .expect("because")
                .iter()
                .map(|b| {
                    (
                        uuid_at(b, "child_id"),
                        b["purpose"].as_str().expect("a purpose").to_owned(),
                    )
                })
                .collect();
            (uuid_at(w, "person_id"), because)
        })
        .collect();
    (viewers, withheld)
}

/// A child's consent history as `reader` gets it: (guardian, granted) per decision, in order.
async fn consent_decisions(api: &Server, child: Uuid, reader: Uuid) -> Vec<(Uuid, bool)> {
    api.get(
        &format!("/v1/children/{child}/consents/history"),
        who(reader),
    )
    .await
    .expect(200)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                uuid_at(e, "guardian_id"),
                e["granted"].as_bool().expect("granted"),
            )
        })
        .collect()
}

fn reasons(pairs: &[(Uuid, &str)]) -> BTreeMap<Uuid, String> {
    pairs.iter().map(|(p, r)| (*p, (*r).to_owned())).collect()
}

/// A quiet period in UTC from an hour ago to an hour from now (whole minutes), and its end.
fn quiet_now() -> (Value, DateTime<Utc>) {
    let now = Utc::now();
    let start = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole minute")
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
        "weekly": [{"day": day, "start": start.format("%H:%M").to_string(), "end": end.format("%H:%M").to_string()}]
    });
    (schedule, end)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

fn ids(list: &Value, field: &str) -> Vec<Uuid> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| uuid_at(v, field))
        .collect()
}

/// A person made by accepting an invitation: their id and e-mail address.
struct Parent {
    id: Uuid,
    email: String,
}

async fn the_full_life_of_a_class(backend: Backend) {
    let api = Server::start(backend).await;

    // ---- The operator, with a token from `kring-api token --operator`, registers a school.
    let operator_token = api.cli_token(Who::Operator);
    let me = api
        .send_bearer(Method::GET, "/v1/me", &operator_token)
        .await;
    assert_eq!(me.expect(200)["operator"], true);
    let registered = api
        .post(
            "/v1/schools",
            Who::Operator,
            json!({"name": "Basisschool De Kring", "brin": "07XY"}),
        )
        .await;
    registered.expect(201);
    let school = registered.id("school_id");
    let school_group = registered.id("school_group_id");

    // ---- Staff: the operator adds the director, who adds a teacher and a compliance officer.
    let staff = |by: Who, name: &'static str, email: &'static str, role: &'static str| {
        let api = &api;
        async move {
            let added = api
                .post(
                    &format!("/v1/schools/{school}/staff"),
                    by,
                    json!({"display_name": name, "email": email, "role": role}),
                )
                .await;
            added.expect(201);
            added.id("person_id")
        }
    };
    let director = staff(
        Who::Operator,
        "Dirk de Directeur",
        "dirk@kring.example",
        "director",
    )
    .await;
    let teacher = staff(who(director), "Juf Anna", "anna@kring.example", "teacher").await;
    let officer = staff(
        who(director),
        "Fee Privacy",
        "fee@kring.example",
        "compliance_officer",
    )
    .await;

    // ---- A class group with its teacher, and three children.
    let created = api
        .post(
            &format!("/v1/schools/{school}/groups"),
            who(director),
            json!({"name": "Groep 5a"}),
        )
        .await;
    created.expect(201);
    let class = created.id("group_id");
    api.post(
        &format!("/v1/groups/{class}/staff"),
        who(director),
        json!({"person_id": teacher}),
    )
    .await
    .expect(200);
    let enroll = |first_name: &'static str| {
        let api = &api;
        async move {
            let enrolled = api
                .post(
                    &format!("/v1/groups/{class}/children"),
                    who(teacher),
                    json!({"first_name": first_name, "last_initial": "V"}),
                )
                .await;
            enrolled.expect(201);
            enrolled.id("child_id")
        }
    };
    let sem = enroll("Sem").await;
    let noor = enroll("Noor").await;
    let lotte = enroll("Lotte").await;
    let mine = api.get("/v1/me", who(teacher)).await;
    let mine = mine.expect(200);
    assert_eq!(
        mine["email"], "anna@kring.example",
        "the owner sees their address"
    );
    assert_eq!(mine["schools"][0]["role"], "teacher");
    assert!(ids(&mine["groups"], "group_id").contains(&class));

    // ---- Invitations: the teacher invites, parents accept with the code (no account yet),
    // the teacher verifies and approves; only then is a parent a guardian.
    let mut invitations = Vec::new();
    for (child, email, name) in [
        (sem, "mama.sem@thuis.example", "Mama van Sem"),
        (sem, "papa.sem@thuis.example", "Papa van Sem"),
        (noor, "mama.noor@thuis.example", "Mama van Noor"),
        (lotte, "papa.lotte@thuis.example", "Papa van Lotte"),
    ] {
        let sent = api
            .post(
                "/v1/invitations",
                who(teacher),
                json!({"child_id": child, "email": email}),
            )
            .await;
        sent.expect(201);
        let code = sent.body["code"].as_str().expect("a code").to_owned();
        let accepted = api
            .post(
                "/v1/invitations/accept",
                Who::Anonymous,
                json!({"code": code, "display_name": name}),
            )
            .await;
        accepted.expect(200);
        // The code is used up.
        api.post(
            "/v1/invitations/accept",
            Who::Anonymous,
            json!({"code": code, "display_name": name}),
        )
        .await
        .problem(422, "rule_violated");
        invitations.push((
            sent.id("invitation_id"),
            Parent {
                id: accepted.id("person_id"),
                email: email.to_owned(),
            },
        ));
    }
    let mum = &invitations[0].1;
    let unapproved = api.get("/v1/me", who(mum.id)).await;
    assert_eq!(
        unapproved.expect(200)["children"],
        json!([]),
        "accepted is not yet linked"
    );
    let listed = api
        .get(&format!("/v1/groups/{class}/invitations"), who(teacher))
        .await;
    let listed = listed.expect(200);
    let statuses: Vec<&str> = listed["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .map(|i| i["status"].as_str().expect("a status"))
        .collect();
    assert_eq!(statuses, ["accepted"; 4], "{listed}");
    assert!(
        !listed.to_string().contains('@'),
        "no e-mail address in the list: {listed}"
    );
    for (invitation, _) in &invitations {
        api.post(
            &format!("/v1/invitations/{invitation}/approve"),
            who(teacher),
            json!({}),
        )
        .await
        .expect(200);
    }
    let [(_, mum), (_, dad), (_, noors_mother), (_, lottes_father)] = invitations
        .into_iter()
        .collect::<Vec<_>>()
        .try_into()
        .ok()
        .expect("four parents");
    let linked = api.get("/v1/me", who(mum.id)).await;
    let linked = linked.expect(200);
    assert_eq!(ids(&linked["children"], "child_id"), vec![sem]);
    assert_eq!(linked["email"], mum.email.as_str());
    let group = api.get(&format!("/v1/groups/{class}"), who(mum.id)).await;
    let group = group.expect(200);
    let guardians: BTreeSet<Uuid> = ids(&group["guardians"], "person_id").into_iter().collect();
    assert_eq!(
        guardians,
        BTreeSet::from([mum.id, dad.id, noors_mother.id, lottes_father.id])
    );
    assert!(
        !group.to_string().contains('@'),
        "no e-mail address in a group: {group}"
    );
    // In the whole-school group a parent sees the staff and their own child, not every pupil
    // and parent of the school; the staff see everyone.
    let whole = api
        .get(&format!("/v1/groups/{school_group}"), who(mum.id))
        .await;
    let whole = whole.expect(200);
    assert_eq!(ids(&whole["children"], "child_id"), vec![sem]);
    assert_eq!(ids(&whole["guardians"], "person_id"), vec![mum.id]);
    assert!(ids(&whole["staff"], "person_id").contains(&teacher));
    let whole = api
        .get(&format!("/v1/groups/{school_group}"), who(teacher))
        .await;
    let mut everyone = ids(&whole.expect(200)["children"], "child_id");
    everyone.sort();
    let mut three = vec![sem, noor, lotte];
    three.sort();
    assert_eq!(everyone, three);

    // ---- Consent, per child and purpose, by the guardians.
    let policy = api
        .get(&format!("/v1/schools/{school}/consent-policy"), who(mum.id))
        .await;
    let purposes: Vec<&str> = policy.expect(200)["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .map(|p| p["purpose"].as_str().expect("a purpose"))
        .collect();
    assert!(purposes.contains(&"group_communication"), "{purposes:?}");
    let consent = |parent: Uuid, child: Uuid, granted: bool| {
        let api = &api;
        async move {
            let decided = api
                .put(
                    &format!("/v1/children/{child}/consents/group_communication"),
                    who(parent),
                    json!({"granted": granted}),
                )
                .await;
            decided.expect(200);
            decided.body["effective"].as_bool().expect("effective")
        }
    };
    assert!(consent(mum.id, sem, true).await);
    assert!(consent(dad.id, sem, true).await);
    assert!(consent(noors_mother.id, noor, true).await);
    assert!(
        !consent(lottes_father.id, lotte, false).await,
        "Lotte's father says no"
    );

    // ---- A post with tagged photos: the answer warns which child withholds which photo from
    // how many parents.
    let upload = |marker: &'static str| {
        let api = &api;
        async move {
            let uploaded = api
                .send(
                    Method::POST,
                    "/v1/media",
                    who(teacher),
                    Body::Raw("image/jpeg".into(), photo(marker)),
                )
                .await;
            uploaded.expect(201);
            uploaded.id("media_id")
        }
    };
    let group_photo = upload("sem-en-noor").await;
    let lottes_photo = upload("lotte").await;
    let posted = api
        .post(
            &format!("/v1/groups/{class}/posts"),
            who(teacher),
            json!({"body": "Wat een mooie schoolreis!", "media": [
                {"media_id": group_photo, "tagged_children": [sem, noor]},
                {"media_id": lottes_photo, "tagged_children": [lotte]},
            ]}),
        )
        .await;
    posted.expect(201);
    let post = posted.id("post_id");
    assert_eq!(
        posted.body["warnings"],
        json!([{"media_id": lottes_photo, "child_id": lotte, "purpose": "group_communication", "withheld_from": 3}]),
        "Lotte's photo is withheld from the three other parents"
    );

    // ---- Who may see each photo, and why.
    let (seen_by, withheld) = viewers(&api, who(teacher), group_photo).await;
    assert_eq!(
        seen_by,
        reasons(&[
            (teacher, "staff"),
            (director, "staff"),
            (mum.id, "own_child"),
            (dad.id, "own_child"),
            (noors_mother.id, "own_child"),
            (lottes_father.id, "audience"),
        ])
    );
    assert!(withheld.is_empty());
    let (seen_by, withheld) = viewers(&api, who(officer), lottes_photo).await;
    assert_eq!(
        seen_by,
        reasons(&[
            (teacher, "staff"),
            (director, "staff"),
            (lottes_father.id, "own_child")
        ])
    );
    let because = vec![(lotte, "group_communication".to_owned())];
    assert_eq!(
        withheld,
        BTreeMap::from([
            (mum.id, because.clone()),
            (dad.id, because.clone()),
            (noors_mother.id, because.clone()),
        ])
    );
    for parent in [&mum, &dad, &noors_mother] {
        assert_eq!(
            feed_media(&api, parent.id, post).await,
            Some(vec![group_photo])
        );
        assert_eq!(
            bytes_of(&api, parent.id, group_photo).await,
            Ok(photo("sem-en-noor"))
        );
        assert_eq!(bytes_of(&api, parent.id, lottes_photo).await, Err(404));
    }
    let mut both = vec![group_photo, lottes_photo];
    both.sort();
    let mut lottes = feed_media(&api, lottes_father.id, post)
        .await
        .expect("in the feed");
    lottes.sort();
    assert_eq!(lottes, both);
    assert_eq!(
        bytes_of(&api, lottes_father.id, lottes_photo).await,
        Ok(photo("lotte"))
    );

    // ---- Sem's father withdraws: the class photo showing Sem disappears for the parents of
    // other children, and stays for Sem's own parents.
    assert!(
        !consent(dad.id, sem, false).await,
        "one withdrawal ends the consent"
    );
    for (parent, sees) in [
        (&mum, true),
        (&dad, true),
        (&noors_mother, false),
        (&lottes_father, false),
    ] {
        let shown = feed_media(&api, parent.id, post)
            .await
            .expect("the post stays");
        assert_eq!(
            shown.contains(&group_photo),
            sees,
            "feed of {}",
            parent.email
        );
        let bytes = bytes_of(&api, parent.id, group_photo).await;
        assert_eq!(bytes.is_ok(), sees, "bytes for {}", parent.email);
    }
    assert_eq!(
        bytes_of(&api, teacher, group_photo).await,
        Ok(photo("sem-en-noor"))
    );
    let (_, withheld) = viewers(&api, who(teacher), group_photo).await;
    let because = vec![(sem, "group_communication".to_owned())];
    assert_eq!(
        withheld,
        BTreeMap::from([
            (noors_mother.id, because.clone()),
            (lottes_father.id, because)
        ])
    );

    // ---- Removal: Lotte's photo, then a whole post, are gone for everyone.
    api.delete(
        &format!("/v1/media/{lottes_photo}"),
        who(teacher),
        Some(json!({"reason": "op verzoek"})),
    )
    .await
    .expect(200);
    assert_eq!(
        bytes_of(&api, lottes_father.id, lottes_photo).await,
        Err(404)
    );
    assert_eq!(bytes_of(&api, teacher, lottes_photo).await, Err(404));
    assert_eq!(feed_media(&api, lottes_father.id, post).await, Some(vec![]));
    let mistake_photo = upload("verkeerde-foto").await;
    let mistake = api
        .post(
            &format!("/v1/groups/{class}/posts"),
            who(teacher),
            json!({"body": "Oeps", "media": [{"media_id": mistake_photo}]}),
        )
        .await;
    mistake.expect(201);
    let mistake = mistake.id("post_id");
    api.get(&format!("/v1/posts/{mistake}"), who(mum.id))
        .await
        .expect(200);
    api.delete(
        &format!("/v1/posts/{mistake}"),
        who(director),
        Some(json!({"reason": "verkeerde klas"})),
    )
    .await
    .expect(200);
    for reader in [mum.id, teacher, director] {
        api.get(&format!("/v1/posts/{mistake}"), who(reader))
            .await
            .problem(404, "not_found");
        assert_eq!(bytes_of(&api, reader, mistake_photo).await, Err(404));
    }

    // ---- A conversation between Sem's mother and the teacher; nobody else reads along.
    let started = api
        .post(
            "/v1/conversations",
            who(mum.id),
            json!({"child_id": sem, "body": "Mag Sem morgen eerder weg?"}),
        )
        .await;
    started.expect(201);
    let conversation = started.id("conversation_id");
    let messages = format!("/v1/conversations/{conversation}/messages");
    let inbox = api.get("/v1/conversations", who(teacher)).await;
    assert_eq!(
        ids(&inbox.expect(200)["conversations"], "conversation_id"),
        vec![conversation]
    );
    api.post(&messages, who(teacher), json!({"body": "Dat is goed."}))
        .await
        .expect(201);
    for outsider in [dad.id, noors_mother.id, director] {
        api.get(&messages, who(outsider))
            .await
            .problem(404, "not_found");
    }

    // ---- Quiet hours: the teacher's notifications are held until they end; parents see it.
    let (schedule, until) = quiet_now();
    api.put("/v1/me/quiet-hours", who(teacher), schedule)
        .await
        .expect(200);
    let availability = api
        .get(&format!("/v1/people/{teacher}/availability"), who(mum.id))
        .await;
    let availability = availability.expect(200);
    assert_eq!(availability["in_quiet_hours"], true);
    assert_eq!(time(&availability["until"]), until);
    let late = api
        .post(
            &messages,
            who(mum.id),
            json!({"body": "En overmorgen ook?"}),
        )
        .await;
    late.expect(201);
    let late = late.id("message_id");
    let now = api.get("/v1/me/notifications", who(teacher)).await;
    let now = now.expect(200);
    assert_eq!(ids(&now["held"], "message_id"), vec![late], "{now}");
    assert_eq!(time(&now["held"][0]["release_at"]), until);
    assert!(!ids(&now["due"], "message_id").contains(&late));
    let then = api
        .get(
            &format!(
                "/v1/me/notifications?as_of={}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            who(teacher),
        )
        .await;
    let then = then.expect(200);
    assert!(ids(&then["due"], "message_id").contains(&late), "{then}");
    assert_eq!(then["held"], json!([]));
    let read = api.get(&messages, who(teacher)).await;
    let bodies: Vec<&str> = read.expect(200)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("a body"))
        .collect();
    assert_eq!(
        bodies,
        [
            "Mag Sem morgen eerder weg?",
            "Dat is goed.",
            "En overmorgen ook?"
        ]
    );

    // ---- An absence needs a day's notice.
    let today = school_today();
    let absences = format!("/v1/children/{sem}/absences");
    let head = api.head().await;
    let refused = api
        .post(
            &absences,
            who(mum.id),
            json!({"from": today, "to": today, "reason": "Bruiloft"}),
        )
        .await;
    refused.problem(422, "rule_violated");
    assert_eq!(api.head().await, head, "a refusal writes nothing");
    let day = today + Duration::days(2);
    api.post(
        &absences,
        who(mum.id),
        json!({"from": day, "to": day, "reason": "Bruiloft"}),
    )
    .await
    .expect(201);
    let absent = api
        .get(
            &format!("/v1/groups/{class}/absences?date={day}"),
            who(teacher),
        )
        .await;
    let absent = absent.expect(200);
    assert_eq!(ids(&absent["absences"], "child_id"), vec![sem]);
    assert_eq!(absent["absences"][0]["reason"], "Bruiloft");
    assert_eq!(absent["absences"][0]["first_name"], "Sem");

    // ---- An activity with one volunteer slot: the second volunteer gets 409.
    let starts = Utc::now() + Duration::days(3);
    let scheduled = api
        .post(
            &format!("/v1/groups/{class}/activities"),
            who(teacher),
            json!({"title": "Hulp bij de excursie", "starts_at": starts, "ends_at": starts + Duration::hours(3), "volunteer_slots": 1}),
        )
        .await;
    scheduled.expect(201);
    let activity = scheduled.id("activity_id");
    let volunteers = format!("/v1/activities/{activity}/volunteers");
    api.send(Method::POST, &volunteers, who(mum.id), Body::Empty)
        .await
        .expect(201);
    let head = api.head().await;
    api.send(Method::POST, &volunteers, who(noors_mother.id), Body::Empty)
        .await
        .problem(409, "conflict");
    assert_eq!(api.head().await, head, "a full activity writes nothing");
    let calendar = api
        .get(
            &format!("/v1/groups/{class}/activities"),
            who(noors_mother.id),
        )
        .await;
    let listed = &calendar.expect(200)["activities"][0];
    assert_eq!(
        (listed["taken"].as_u64(), listed["free"].as_u64()),
        (Some(1), Some(0))
    );

    // ---- The compliance officer reads Sem's consent history; the read is logged.
    let decisions = consent_decisions(&api, sem, officer).await;
    assert_eq!(
        decisions,
        vec![(mum.id, true), (dad.id, true), (dad.id, false)]
    );
    // The access-log entry answers no position: read after the log's head.
    api.sync().await;
    let log = api
        .get(
            &format!("/v1/audit/access-log?subject=child:{sem}"),
            who(officer),
        )
        .await;
    let entries = log.expect(200)["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert!(
        entries
            .iter()
            .any(|e| e["accessor"]["person_id"] == officer.to_string()),
        "the officer's read is in the log: {entries:?}"
    );

    // ---- Sem's mother exports everything about herself and her child.
    let export = api.get("/v1/me/export", who(mum.id)).await;
    let export = export.expect(200);
    assert_eq!(export["profile"]["email"], mum.email.as_str());
    let text = export.to_string();
    for own in [
        "Mag Sem morgen eerder weg?",
        "Sem",
        "Bruiloft",
        "Mama van Sem",
    ] {
        assert!(text.contains(own), "the export holds {own:?}");
    }
    for other in [&dad.email, &noors_mother.email, &lottes_father.email] {
        assert!(
            !text.contains(other.as_str()),
            "no address of others: {other}"
        );
    }
    let types: BTreeSet<&str> = export["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().expect("a type"))
        .collect();
    for kind in [
        "InvitationAccepted",
        "GuardianLinked",
        "ConsentDecided",
        "MessagePosted",
    ] {
        assert!(types.contains(kind), "the export has {kind}: {types:?}");
    }

    // ---- The director erases her: her links end, her personal data reads "[erased]"
    // everywhere, the school can still show who decided what about consent, and the log still
    // verifies.
    let erased = api
        .send(
            Method::POST,
            &format!("/v1/people/{}/erasure", mum.id),
            who(director),
            Body::Empty,
        )
        .await;
    erased.expect(202);
    let group = api.get(&format!("/v1/groups/{class}"), who(teacher)).await;
    let group = group.expect(200);
    // Her erasure ended her guardianship: she is no member of the class any more.
    assert!(group["guardians"]
        .as_array()
        .expect("guardians")
        .iter()
        .all(|g| uuid_at(g, "person_id") != mum.id));
    let read = api.get(&messages, who(teacher)).await;
    let bodies: Vec<&str> = read.expect(200)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("a body"))
        .collect();
    assert_eq!(bodies, ["[erased]", "Dat is goed.", "[erased]"]);
    let profile = api.get("/v1/me", who(mum.id)).await;
    let profile = profile.expect(200);
    assert_eq!(
        (&profile["email"], &profile["display_name"]),
        (&json!("[erased]"), &json!("[erased]"))
    );
    assert!(!profile.to_string().contains(&mum.email));
    let decisions = consent_decisions(&api, sem, director).await;
    assert_eq!(
        decisions,
        vec![(mum.id, true), (dad.id, true), (dad.id, false)]
    );

    // A child's erasure: Lotte's name is gone, her father's refusal is still on record.
    api.send(
        Method::POST,
        &format!("/v1/children/{lotte}/erasure"),
        Who::Operator,
        Body::Empty,
    )
    .await
    .expect(202);
    let group = api.get(&format!("/v1/groups/{class}"), who(teacher)).await;
    let group = group.expect(200);
    let child = group["children"]
        .as_array()
        .expect("children")
        .iter()
        .find(|c| uuid_at(c, "child_id") == lotte)
        .expect("still enrolled");
    assert_eq!(
        (&child["first_name"], &child["last_initial"]),
        (&json!("[erased]"), &json!("[erased]"))
    );
    let history = api
        .get(
            &format!("/v1/children/{lotte}/consents/history"),
            who(officer),
        )
        .await;
    let entries = &history.expect(200)["entries"];
    assert_eq!(entries.as_array().map(Vec::len), Some(1));
    assert_eq!(entries[0]["granted"], false);

    let verified = api.get("/v1/audit/verify", who(officer)).await;
    let verified = verified.expect(200);
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["failures"], json!([]));
    // Every event of the log was checked: nothing here ever conflicted, so positions have no gaps.
    assert_eq!(
        verified["events_checked"].as_u64(),
        Some(api.head().await),
        "{verified}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_life_of_a_class_on_sqlite() {
    the_full_life_of_a_class(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_life_of_a_class_on_postgres() {
    the_full_life_of_a_class(Backend::Postgres).await;
}
