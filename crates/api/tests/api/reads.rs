//! Read receipts over real HTTP, on SQLite and on PostgreSQL: marking many items at once,
//! idempotently, only what one may see (a refusal writes nothing); how many guardians read a
//! post and who of one's own groups did not; unread counts; read state of one's own messages;
//! no guardian ever seeing another's reads; reads in the export, gone with an erasure and with
//! an expired post.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use crate::school_server;
use kring_domain::{PersonId, StreamName};
use kring_projections::models::reads::{self, ReadItem};
use school_server::{Api, School};
use serde_json::{json, Value};
use uuid::Uuid;

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    many_items_are_marked_at_once_and_marking_again_writes_nothing,
    one_item_the_caller_may_not_see_refuses_the_whole_request_and_writes_nothing,
    staff_see_how_many_guardians_read_a_post_and_who_of_their_own_groups_did_not,
    unread_counts_fall_as_posts_and_messages_are_read,
    the_sender_sees_whether_the_other_side_read_and_no_guardian_sees_another_guardians_reads,
    the_export_holds_the_reads_and_an_erasure_removes_them,
    reads_of_a_post_expired_by_retention_disappear_with_it,
);

/// A school with a guardian for each of its children (two for child a).
struct Family {
    s: School,
    mum: PersonId,
    dad: PersonId,
    bram: PersonId,
    carla: PersonId,
}

async fn family(api: &Api) -> Family {
    let s = School::build(api, "De Regenboog").await;
    let mum = s.guardian(api, s.child_a, "Mum").await;
    let dad = s.guardian(api, s.child_a, "Dad").await;
    let bram = s.guardian(api, s.child_b, "Bram").await;
    let carla = s.guardian(api, s.child_c, "Carla").await;
    Family {
        s,
        mum,
        dad,
        bram,
        carla,
    }
}

fn id(v: &Value) -> Uuid {
    v.as_str().unwrap().parse().unwrap()
}

async fn publish(api: &Api, by: PersonId, group: impl std::fmt::Display, body: &str) -> Uuid {
    let r = api
        .post(
            &format!("/v1/groups/{group}/posts"),
            Some(&api.person(by)),
            json!({"body": body, "media": []}),
        )
        .await
        .expect(201);
    id(&r.body["post_id"])
}

/// Starts a conversation about `child` by `by` (with the default participants); its id and the
/// first message's.
async fn start(api: &Api, by: PersonId, child: impl serde::Serialize) -> (Uuid, Uuid) {
    let r = api
        .post(
            "/v1/conversations",
            Some(&api.person(by)),
            json!({"child_id": child, "body": "Hallo"}),
        )
        .await
        .expect(201);
    (id(&r.body["conversation_id"]), id(&r.body["message_id"]))
}

async fn say(api: &Api, by: PersonId, conversation: Uuid, body: &str) -> Uuid {
    let r = api
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&api.person(by)),
            json!({ "body": body }),
        )
        .await
        .expect(201);
    id(&r.body["message_id"])
}

async fn mark(
    api: &Api,
    who: PersonId,
    posts: &[Uuid],
    messages: &[Uuid],
) -> school_server::Answer {
    api.post(
        "/v1/me/read",
        Some(&api.person(who)),
        json!({"post_ids": posts, "message_ids": messages}),
    )
    .await
}

async fn reads_of(api: &Api, who: PersonId) -> Vec<ReadItem> {
    api.caught_up().await;
    reads::reads_of(&api.running.state.system.db, who)
        .await
        .unwrap()
}

async fn person_events(api: &Api, who: PersonId) -> usize {
    api.event_types(StreamName::person(who))
        .await
        .iter()
        .filter(|t| *t == "ItemsRead")
        .count()
}

#[track_caller]
fn assert_problem(answer: &school_server::Answer, status: u16, code: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.text);
    assert!(
        answer.content_type.starts_with("application/problem+json"),
        "{}",
        answer.content_type
    );
    assert_eq!(answer.code(), code, "{}", answer.text);
}

async fn many_items_are_marked_at_once_and_marking_again_writes_nothing(api: Api) {
    let f = family(&api).await;
    let posts = [
        publish(&api, f.s.teacher, f.s.group, "Een").await,
        publish(&api, f.s.teacher, f.s.group, "Twee").await,
        publish(&api, f.s.director, f.s.school_group, "Drie").await,
    ];
    let (conversation, first) = start(&api, f.s.teacher, f.s.child_a).await;
    let second = say(&api, f.s.teacher, conversation, "Nog iets").await;

    let p = mark(&api, f.mum, &posts, &[first, second, first])
        .await
        .expect(200)
        .position();
    assert_eq!(person_events(&api, f.mum).await, 1, "one event for the lot");
    let mut expected: Vec<ReadItem> = posts.iter().map(|p| ReadItem::Post((*p).into())).collect();
    expected.extend([first, second].map(|m| ReadItem::Message(m.into())));
    expected.sort();
    assert_eq!(reads_of(&api, f.mum).await, expected);

    // Everything read already: nothing is written, and the head is answered.
    let again = mark(&api, f.mum, &posts[..2], &[second])
        .await
        .expect(200)
        .position();
    assert!(again >= p);
    assert_eq!(
        person_events(&api, f.mum).await,
        1,
        "marking again writes nothing"
    );
    // Nothing to mark at all is no error either.
    api.post("/v1/me/read", Some(&api.person(f.mum)), json!({}))
        .await
        .expect(200);
    assert_eq!(person_events(&api, f.mum).await, 1);
    assert_eq!(reads_of(&api, f.mum).await, expected);

    // Staff mark messages read too.
    let reply = say(&api, f.mum, conversation, "Dank je").await;
    mark(&api, f.s.teacher, &[], &[reply]).await.expect(200);
    assert_eq!(
        reads_of(&api, f.s.teacher).await,
        vec![ReadItem::Message(reply.into())]
    );
}

async fn one_item_the_caller_may_not_see_refuses_the_whole_request_and_writes_nothing(api: Api) {
    let f = family(&api).await;
    let mine = publish(&api, f.s.teacher, f.s.group, "Groep 3").await;
    let other_class = publish(&api, f.s.teacher2, f.s.group2, "Groep 4").await;
    let (_, theirs) = start(&api, f.carla, f.s.child_c).await;
    let (_, ours) = start(&api, f.s.teacher, f.s.child_a).await;
    api.caught_up().await;
    let head = api.head().await;
    let refusals = [
        (vec![mine, other_class], vec![], "a post of another class"),
        (
            vec![mine, Uuid::now_v7()],
            vec![],
            "a post that does not exist",
        ),
        (
            vec![mine],
            vec![ours, theirs],
            "a message of another family's conversation",
        ),
        (
            vec![],
            vec![Uuid::now_v7()],
            "a message that does not exist",
        ),
    ];
    for (posts, messages, what) in refusals {
        let answer = mark(&api, f.mum, &posts, &messages).await;
        assert_problem(&answer, 404, "not_found");
        assert_eq!(api.head().await, head, "{what}: nothing is written");
    }
    // A removed post is gone for everyone.
    api.call(
        reqwest::Method::DELETE,
        &format!("/v1/posts/{mine}"),
        Some(&api.person(f.s.teacher)),
        Some(json!({"reason": "Dubbel"})),
    )
    .await
    .expect(200);
    let head = api.head().await;
    assert_problem(&mark(&api, f.mum, &[mine], &[]).await, 404, "not_found");
    // The operator reads nothing of its own; too many ids are refused before any lookup.
    let answer = api
        .post(
            "/v1/me/read",
            Some(&api.operator()),
            json!({"post_ids": [mine]}),
        )
        .await;
    assert_problem(&answer, 403, "forbidden");
    let many: Vec<Uuid> = (0..501).map(|_| Uuid::now_v7()).collect();
    assert_problem(
        &mark(&api, f.mum, &many, &[]).await,
        422,
        "validation_failed",
    );
    let answer = api
        .post(
            "/v1/me/read",
            Some(&api.person(f.mum)),
            json!({"post_ids": "all"}),
        )
        .await;
    assert_problem(&answer, 422, "validation_failed");
    assert_eq!(api.head().await, head, "no refusal wrote anything");
    assert!(reads_of(&api, f.mum).await.is_empty());
}

async fn post_reads(api: &Api, who: PersonId, post: Uuid) -> school_server::Answer {
    api.get_fresh(&format!("/v1/posts/{post}/reads"), &api.person(who))
        .await
}

fn listed(doc: &Value) -> Vec<(Uuid, String)> {
    let mut out: Vec<(Uuid, String)> = doc["not_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                id(&g["person_id"]),
                g["display_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn staff_see_how_many_guardians_read_a_post_and_who_of_their_own_groups_did_not(api: Api) {
    let f = family(&api).await;
    let everyone = publish(&api, f.s.director, f.s.school_group, "Voor iedereen").await;
    let class = publish(&api, f.s.teacher, f.s.group, "Groep 3").await;
    let named = |people: &[(PersonId, &str)]| {
        let mut v: Vec<(Uuid, String)> = people
            .iter()
            .map(|(p, n)| ((*p).into(), (*n).to_owned()))
            .collect();
        v.sort();
        v
    };

    // The school group's post: every guardian may see it; the teacher of group 3 lists only
    // the guardians of group 3, the director every one.
    let doc = post_reads(&api, f.s.teacher, everyone)
        .await
        .expect(200)
        .body;
    assert_eq!(
        (doc["may_see"].as_u64(), doc["read"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(
        listed(&doc),
        named(&[(f.mum, "Mum"), (f.dad, "Dad"), (f.bram, "Bram")])
    );
    let doc = post_reads(&api, f.s.teacher2, everyone)
        .await
        .expect(200)
        .body;
    assert_eq!(listed(&doc), named(&[(f.carla, "Carla")]));

    mark(&api, f.mum, &[everyone, class], &[]).await.expect(200);
    mark(&api, f.carla, &[everyone], &[]).await.expect(200);
    let doc = post_reads(&api, f.s.teacher, everyone)
        .await
        .expect(200)
        .body;
    assert_eq!(
        (doc["may_see"].as_u64(), doc["read"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(listed(&doc), named(&[(f.dad, "Dad"), (f.bram, "Bram")]));
    let doc = post_reads(&api, f.s.director, everyone)
        .await
        .expect(200)
        .body;
    assert_eq!(listed(&doc), named(&[(f.dad, "Dad"), (f.bram, "Bram")]));
    let doc = post_reads(&api, f.s.teacher2, everyone)
        .await
        .expect(200)
        .body;
    assert!(listed(&doc).is_empty(), "{doc}");

    // A class post: its own guardians only.
    let doc = post_reads(&api, f.s.teacher, class).await.expect(200).body;
    assert_eq!(
        (doc["may_see"].as_u64(), doc["read"].as_u64()),
        (Some(3), Some(1))
    );

    // Only staff of the post's audience: a guardian and the compliance officer are refused, the
    // teacher of another class does not know of the class post, and neither does a stranger.
    assert_problem(&post_reads(&api, f.dad, class).await, 403, "forbidden");
    assert_problem(&post_reads(&api, f.mum, everyone).await, 403, "forbidden");
    assert_problem(
        &post_reads(&api, f.s.officer, everyone).await,
        403,
        "forbidden",
    );
    assert_problem(
        &post_reads(&api, f.s.teacher2, class).await,
        404,
        "not_found",
    );
    assert_problem(&post_reads(&api, f.carla, class).await, 404, "not_found");
    let answer = api
        .get_fresh(&format!("/v1/posts/{class}/reads"), &api.operator())
        .await;
    assert_problem(&answer, 403, "forbidden");
    assert_problem(
        &post_reads(&api, f.s.teacher, Uuid::now_v7()).await,
        404,
        "not_found",
    );
}

async fn unread(api: &Api, who: PersonId) -> Value {
    api.get_fresh("/v1/me/unread", &api.person(who))
        .await
        .expect(200)
        .body
}

fn count_of(doc: &Value, list: &str, key: &str, id: impl ToString) -> u64 {
    let id = id.to_string();
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[key].as_str() == Some(id.as_str()))
        .map_or(0, |e| e["unread"].as_u64().unwrap())
}

async fn unread_counts_fall_as_posts_and_messages_are_read(api: Api) {
    let f = family(&api).await;
    let class = [
        publish(&api, f.s.teacher, f.s.group, "Een").await,
        publish(&api, f.s.teacher, f.s.group, "Twee").await,
    ];
    let everyone = publish(&api, f.s.director, f.s.school_group, "Iedereen").await;
    let (conversation, first) = start(&api, f.s.teacher, f.s.child_a).await;
    let second = say(&api, f.s.teacher, conversation, "Nog iets").await;

    let doc = unread(&api, f.mum).await;
    assert_eq!(
        (doc["posts"].as_u64(), doc["messages"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(count_of(&doc, "groups", "group_id", f.s.group), 2);
    assert_eq!(count_of(&doc, "groups", "group_id", f.s.school_group), 1);
    assert_eq!(
        count_of(&doc, "conversations", "conversation_id", conversation),
        2
    );
    let teacher = unread(&api, f.s.teacher).await;
    assert_eq!(
        count_of(&teacher, "groups", "group_id", f.s.group),
        0,
        "own posts are read"
    );
    assert_eq!(teacher["messages"], 0);

    mark(&api, f.mum, &class[..1], &[first]).await.expect(200);
    let doc = unread(&api, f.mum).await;
    assert_eq!(
        (doc["posts"].as_u64(), doc["messages"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(count_of(&doc, "groups", "group_id", f.s.group), 1);

    mark(&api, f.mum, &[class[1], everyone], &[second])
        .await
        .expect(200);
    let doc = unread(&api, f.mum).await;
    assert_eq!(
        (doc["posts"].as_u64(), doc["messages"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(doc["groups"].as_array().unwrap().is_empty(), "{doc}");

    // The other guardian's counts are their own.
    let dad = unread(&api, f.dad).await;
    assert_eq!(
        (dad["posts"].as_u64(), dad["messages"].as_u64()),
        (Some(3), Some(2))
    );
    // A reply is unread for the teacher until read.
    let reply = say(&api, f.mum, conversation, "Dank je").await;
    assert_eq!(unread(&api, f.s.teacher).await["messages"], 1);
    mark(&api, f.s.teacher, &[], &[reply]).await.expect(200);
    assert_eq!(unread(&api, f.s.teacher).await["messages"], 0);
    api.get_fresh("/v1/me/unread", &api.operator())
        .await
        .expect(403);
}

/// `read` of each message of `conversation` as `who` sees it, by message.
async fn read_flags(api: &Api, who: PersonId, conversation: Uuid) -> Vec<(Uuid, Value)> {
    let doc = api
        .get_fresh(
            &format!("/v1/conversations/{conversation}/messages"),
            &api.person(who),
        )
        .await
        .expect(200)
        .body;
    doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (id(&m["message_id"]), m["read"].clone()))
        .collect()
}

async fn the_sender_sees_whether_the_other_side_read_and_no_guardian_sees_another_guardians_reads(
    api: Api,
) {
    let f = family(&api).await;
    // Mum writes to the class's teacher and her child's other guardian.
    let r = api
        .post(
            "/v1/conversations",
            Some(&api.person(f.mum)),
            json!({"child_id": f.s.child_a, "participants": [f.s.teacher, f.dad], "body": "Vraagje"}),
        )
        .await
        .expect(201);
    let (conversation, question) = (id(&r.body["conversation_id"]), id(&r.body["message_id"]));
    let answer = say(&api, f.s.teacher, conversation, "Prima").await;
    assert_eq!(
        read_flags(&api, f.mum, conversation).await,
        vec![(question, json!(false)), (answer, Value::Null)]
    );
    assert_eq!(
        read_flags(&api, f.s.teacher, conversation).await,
        vec![(question, Value::Null), (answer, json!(false))]
    );

    // Dad reads both: the teacher sees the answer read; Mum does not learn that Dad read her
    // question, nor anything else of his.
    mark(&api, f.dad, &[], &[question, answer])
        .await
        .expect(200);
    assert_eq!(
        read_flags(&api, f.mum, conversation).await,
        vec![(question, json!(false)), (answer, Value::Null)],
        "another guardian's read is not shown to a guardian"
    );
    assert_eq!(
        read_flags(&api, f.s.teacher, conversation).await,
        vec![(question, Value::Null), (answer, json!(true))]
    );
    let inbox = api
        .get_fresh("/v1/conversations", &api.person(f.s.teacher))
        .await
        .expect(200)
        .body;
    assert_eq!(inbox["conversations"][0]["last_message"]["read"], true);
    assert_eq!(
        unread(&api, f.mum).await["messages"],
        1,
        "Dad's reads do not count for Mum"
    );

    // The teacher reads the question: now Mum sees it read.
    mark(&api, f.s.teacher, &[], &[question]).await.expect(200);
    assert_eq!(
        read_flags(&api, f.mum, conversation).await,
        vec![(question, json!(true)), (answer, Value::Null)]
    );
    // And no guardian reads who read a post.
    let post = publish(&api, f.s.teacher, f.s.group, "Groep 3").await;
    mark(&api, f.mum, &[post], &[]).await.expect(200);
    for guardian in [f.mum, f.dad, f.bram] {
        assert_problem(&post_reads(&api, guardian, post).await, 403, "forbidden");
    }
    assert_eq!(unread(&api, f.dad).await["posts"], 1);
}

async fn the_export_holds_the_reads_and_an_erasure_removes_them(api: Api) {
    let f = family(&api).await;
    let post = publish(&api, f.s.teacher, f.s.group, "Groep 3").await;
    let (_, message) = start(&api, f.s.teacher, f.s.child_a).await;
    mark(&api, f.mum, &[post], &[message]).await.expect(200);
    mark(&api, f.dad, &[post], &[]).await.expect(200);

    let export = api
        .get_fresh("/v1/me/export", &api.person(f.mum))
        .await
        .expect(200)
        .body;
    let read: Vec<&Value> = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "ItemsRead")
        .collect();
    assert_eq!(read.len(), 1, "{export}");
    assert_eq!(read[0]["stream"], format!("person-{}", f.mum));
    assert_eq!(read[0]["payload"]["post_ids"], json!([post]));
    assert_eq!(read[0]["payload"]["message_ids"], json!([message]));
    // Dad's reads are his: not in Mum's export.
    let dads = format!("person-{}", f.dad);
    assert!(
        export["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["stream"] != dads.as_str()),
        "{export}"
    );

    let doc = post_reads(&api, f.s.teacher, post).await.expect(200).body;
    assert_eq!(
        (doc["may_see"].as_u64(), doc["read"].as_u64()),
        (Some(3), Some(2))
    );
    api.post(
        &format!("/v1/people/{}/erasure", f.mum),
        Some(&api.person(f.s.director)),
        json!({}),
    )
    .await
    .expect(202);
    assert!(
        reads_of(&api, f.mum).await.is_empty(),
        "no read of hers remains"
    );
    let doc = post_reads(&api, f.s.teacher, post).await.expect(200).body;
    assert_eq!(
        (doc["may_see"].as_u64(), doc["read"].as_u64()),
        (Some(2), Some(1)),
        "she left the audience and her read the count"
    );
    assert_eq!(
        reads_of(&api, f.dad).await,
        vec![ReadItem::Post(post.into())]
    );
}

async fn reads_of_a_post_expired_by_retention_disappear_with_it(api: Api) {
    let f = family(&api).await;
    let old = publish(&api, f.s.teacher, f.s.group, "Oud").await;
    let posted = chrono::Utc::now();
    let new = publish(&api, f.s.teacher, f.s.group, "Nieuw").await;
    mark(&api, f.mum, &[old, new], &[]).await.expect(200);
    mark(&api, f.dad, &[old], &[]).await.expect(200);
    assert_eq!(
        post_reads(&api, f.s.teacher, old).await.expect(200).body["read"],
        2
    );

    let state = &api.running.state;
    state.catch_up().await.unwrap();
    let report = kring_api::retention::expire_due(state, posted + chrono::Duration::days(365))
        .await
        .unwrap();
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert_eq!(report.expired[0].as_uuid(), old);
    assert_eq!(
        reads_of(&api, f.mum).await,
        vec![ReadItem::Post(new.into())]
    );
    assert!(reads_of(&api, f.dad).await.is_empty());
    assert!(reads::readers_of_post(&state.system.db, old.into())
        .await
        .unwrap()
        .is_empty());
    assert_problem(&post_reads(&api, f.s.teacher, old).await, 404, "not_found");
    assert_problem(&mark(&api, f.dad, &[old], &[]).await, 404, "not_found");
}
