//! One school built through the public API, shared by the authorisation matrix and the
//! bad-input test: two class groups with a teacher each, a director, a compliance officer, a
//! child with a linked guardian in each class, a post with a photo, a conversation, an activity
//! and an absence. Every e-mail address given to the API is remembered with its owner, and a few
//! texts carry markers, so that answers can be searched for personal data of others.

use crate::harness::{Body, Server, Who};
use chrono::{Duration, NaiveDate, Utc};
use kring_domain::child::SCHOOL_TIME_ZONE;
use serde_json::json;
use std::sync::Mutex;
use uuid::Uuid;

/// The first name of the guardian's child.
pub const CHILD_NAME: &str = "Xandrijn";
/// The guardian's display name.
pub const GUARDIAN_NAME: &str = "Gerda Geheimhouding";
/// The guardian's first message to the teacher.
pub const MESSAGE: &str = "Zwq-bericht: hij slaapt slecht sinds de verhuizing";
/// The reason of the guardian's absence report.
pub const ABSENCE_REASON: &str = "Zwq-reden: bruiloft van tante";
/// The text of the class post.
pub const POST_BODY: &str = "Zwq-post: de schoolreis naar het bos";

/// Today where the school is.
pub fn school_today() -> NaiveDate {
    Utc::now().with_timezone(&SCHOOL_TIME_ZONE).date_naive()
}

/// A small JPEG-looking upload (its signature is what the server checks).
pub fn photo(marker: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    for _ in 0..32 {
        bytes.extend_from_slice(marker.as_bytes());
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// The shared school.
pub struct School {
    /// The school.
    pub id: Uuid,
    /// Its whole-school group.
    pub school_group: Uuid,
    /// The guardian's child's class.
    pub class_a: Uuid,
    /// Another class.
    pub class_b: Uuid,
    /// The director.
    pub director: Uuid,
    /// The teacher of class A.
    pub teacher: Uuid,
    /// The teacher of class B.
    pub other_teacher: Uuid,
    /// The compliance officer.
    pub officer: Uuid,
    /// The guardian of `child` (class A).
    pub guardian: Uuid,
    /// The guardian of `other_child` (class B).
    pub other_parent: Uuid,
    /// The child in class A.
    pub child: Uuid,
    /// The child in class B.
    pub other_child: Uuid,
    /// A child in class A without guardians, for invitations.
    pub spare_child: Uuid,
    /// The teacher's post in class A, with one untagged photo.
    pub post: Uuid,
    /// That photo.
    pub media: Uuid,
    /// The guardian's conversation with the teacher about `child`.
    pub conversation: Uuid,
    /// An activity in class A with plenty of slots.
    pub activity: Uuid,
    /// The guardian's absence report for `child`.
    pub absence: Uuid,
    /// A notification of the guardian (the teacher's reply).
    pub guardian_notification: String,
    emails: Mutex<Vec<(Option<Uuid>, String)>>,
}

impl School {
    /// Builds the school through the API.
    pub async fn build(api: &Server) -> Self {
        let emails = Mutex::new(Vec::new());
        let created = api
            .post(
                "/v1/schools",
                Who::Operator,
                json!({"name": "De Kring", "brin": "12AB"}),
            )
            .await;
        created.expect(201);
        let id = created.id("school_id");
        let school_group = created.id("school_group_id");
        let director = add_staff(
            api,
            &emails,
            Who::Operator,
            id,
            "director",
            "Dirk Directeur",
        )
        .await;
        let by_director = Who::Person(director);
        let teacher = add_staff(api, &emails, by_director, id, "teacher", "Juf Anna").await;
        let other_teacher =
            add_staff(api, &emails, by_director, id, "teacher", "Meester Bas").await;
        let officer = add_staff(
            api,
            &emails,
            by_director,
            id,
            "compliance_officer",
            "Fee Functionaris",
        )
        .await;
        let class_a = create_group(api, director, id, "Groep 5a").await;
        let class_b = create_group(api, director, id, "Groep 6b").await;
        assign(api, director, class_a, teacher).await;
        assign(api, director, class_b, other_teacher).await;
        let child = enroll(api, Who::Person(teacher), class_a, CHILD_NAME).await;
        let other_child = enroll(api, Who::Person(other_teacher), class_b, "Yara").await;
        let spare_child = enroll(api, Who::Person(teacher), class_a, "Zeno").await;
        let mut school = Self {
            id,
            school_group,
            class_a,
            class_b,
            director,
            teacher,
            other_teacher,
            officer,
            guardian: Uuid::nil(),
            other_parent: Uuid::nil(),
            child,
            other_child,
            spare_child,
            post: Uuid::nil(),
            media: Uuid::nil(),
            conversation: Uuid::nil(),
            activity: Uuid::nil(),
            absence: Uuid::nil(),
            guardian_notification: String::new(),
            emails,
        };
        school.guardian = school.link(api, teacher, child, GUARDIAN_NAME).await;
        school.other_parent = school
            .link(api, other_teacher, other_child, "Otto Ouder")
            .await;

        let (post, media) = school.post_photo(api, &[]).await;
        school.post = post;
        school.media = media;

        let started = api
            .post(
                "/v1/conversations",
                Who::Person(school.guardian),
                json!({"child_id": child, "body": MESSAGE}),
            )
            .await;
        started.expect(201);
        school.conversation = started.id("conversation_id");
        api.post(
            &format!("/v1/conversations/{}/messages", school.conversation),
            Who::Person(teacher),
            json!({"body": "Dank voor het laten weten."}),
        )
        .await
        .expect(201);
        let notifications = api
            .get("/v1/me/notifications", Who::Person(school.guardian))
            .await;
        school.guardian_notification = notifications.expect(200)["due"][0]["notification_id"]
            .as_str()
            .expect("the guardian is notified of the reply")
            .to_owned();

        school.activity = school.activity(api).await;
        school.absence = school.absence(api).await;
        school
    }

    /// Every e-mail address given to the API, with its owner when known.
    pub fn emails(&self) -> Vec<(Option<Uuid>, String)> {
        self.emails.lock().expect("emails").clone()
    }

    /// Remembers an e-mail address given to the API.
    pub fn remember(&self, owner: Option<Uuid>, email: String) {
        self.emails.lock().expect("emails").push((owner, email));
    }

    /// A new teacher (not assigned to any group), added by the director.
    pub async fn new_teacher(&self, api: &Server) -> Uuid {
        add_staff(
            api,
            &self.emails,
            Who::Person(self.director),
            self.id,
            "teacher",
            "Invaljuf",
        )
        .await
    }

    /// A new child in class A, enrolled by the teacher.
    pub async fn new_child(&self, api: &Server) -> Uuid {
        enroll(api, Who::Person(self.teacher), self.class_a, "Nieuweling").await
    }

    /// An invitation by `staff` for `child`: its id and code.
    pub async fn invite(&self, api: &Server, staff: Uuid, child: Uuid) -> (Uuid, String) {
        let email = format!("ouder-{}@thuis.example", Uuid::now_v7().simple());
        let sent = api
            .post(
                "/v1/invitations",
                Who::Person(staff),
                json!({"child_id": child, "email": email}),
            )
            .await;
        sent.expect(201);
        // The invitee's id is learnt only on acceptance; nobody calls as an unknown invitee.
        self.remember(None, email);
        let code = sent.body["code"].as_str().expect("a code").to_owned();
        (sent.id("invitation_id"), code)
    }

    /// Accepts an invitation (no token: the code is the secret); the new person's id.
    pub async fn accept(api: &Server, code: &str, display_name: &str) -> Uuid {
        let accepted = api
            .post(
                "/v1/invitations/accept",
                Who::Anonymous,
                json!({"code": code, "display_name": display_name}),
            )
            .await;
        accepted.expect(200);
        accepted.id("person_id")
    }

    /// An invitation of the spare child, accepted but not approved.
    pub async fn accepted_invitation(&self, api: &Server) -> Uuid {
        let (invitation, code) = self.invite(api, self.teacher, self.spare_child).await;
        Self::accept(api, &code, "Nog Niet Goedgekeurd").await;
        invitation
    }

    /// Invites, accepts and approves a guardian of `child`.
    pub async fn link(&self, api: &Server, staff: Uuid, child: Uuid, name: &str) -> Uuid {
        let email = format!(
            "{}-{}@thuis.example",
            name.split(' ').next().unwrap_or("ouder").to_lowercase(),
            Uuid::now_v7().simple()
        );
        let sent = api
            .post(
                "/v1/invitations",
                Who::Person(staff),
                json!({"child_id": child, "email": email}),
            )
            .await;
        sent.expect(201);
        let person = Self::accept(api, sent.body["code"].as_str().expect("a code"), name).await;
        self.remember(Some(person), email);
        api.post(
            &format!("/v1/invitations/{}/approve", sent.id("invitation_id")),
            Who::Person(staff),
            json!({}),
        )
        .await
        .expect(200);
        person
    }

    /// Uploads a photo as `who`; its media id.
    pub async fn upload(api: &Server, who: Who, marker: &str) -> Uuid {
        let uploaded = api
            .send(
                reqwest::Method::POST,
                "/v1/media",
                who,
                Body::Raw("image/jpeg".into(), photo(marker)),
            )
            .await;
        uploaded.expect(201);
        uploaded.id("media_id")
    }

    /// A post by the teacher in class A with one photo tagged with `tagged`: post and media id.
    pub async fn post_photo(&self, api: &Server, tagged: &[Uuid]) -> (Uuid, Uuid) {
        let media = Self::upload(api, Who::Person(self.teacher), "klassenfoto").await;
        let posted = api
            .post(
                &format!("/v1/groups/{}/posts", self.class_a),
                Who::Person(self.teacher),
                json!({"body": POST_BODY, "media": [{"media_id": media, "tagged_children": tagged}]}),
            )
            .await;
        posted.expect(201);
        (posted.id("post_id"), media)
    }

    /// An activity in class A a week from now with 50 slots, scheduled by the teacher.
    pub async fn activity(&self, api: &Server) -> Uuid {
        let starts = Utc::now() + Duration::days(7);
        let scheduled = api
            .post(
                &format!("/v1/groups/{}/activities", self.class_a),
                Who::Person(self.teacher),
                json!({"title": "Luizencontrole", "starts_at": starts, "ends_at": starts + Duration::hours(2), "volunteer_slots": 50}),
            )
            .await;
        scheduled.expect(201);
        scheduled.id("activity_id")
    }

    /// An absence of the child three days from now, reported by the guardian.
    pub async fn absence(&self, api: &Server) -> Uuid {
        let day = school_today() + Duration::days(3);
        let reported = api
            .post(
                &format!("/v1/children/{}/absences", self.child),
                Who::Person(self.guardian),
                json!({"from": day, "to": day, "reason": ABSENCE_REASON}),
            )
            .await;
        reported.expect(201);
        reported.id("absence_id")
    }
}

async fn add_staff(
    api: &Server,
    emails: &Mutex<Vec<(Option<Uuid>, String)>>,
    by: Who,
    school: Uuid,
    role: &str,
    name: &str,
) -> Uuid {
    let email = format!("{role}-{}@school.example", Uuid::now_v7().simple());
    let added = api
        .post(
            &format!("/v1/schools/{school}/staff"),
            by,
            json!({"display_name": name, "email": email, "role": role}),
        )
        .await;
    added.expect(201);
    let person = added.id("person_id");
    emails.lock().expect("emails").push((Some(person), email));
    person
}

async fn create_group(api: &Server, director: Uuid, school: Uuid, name: &str) -> Uuid {
    let created = api
        .post(
            &format!("/v1/schools/{school}/groups"),
            Who::Person(director),
            json!({"name": name}),
        )
        .await;
    created.expect(201);
    created.id("group_id")
}

async fn assign(api: &Server, director: Uuid, group: Uuid, person: Uuid) {
    api.post(
        &format!("/v1/groups/{group}/staff"),
        Who::Person(director),
        json!({"person_id": person}),
    )
    .await
    .expect(200);
}

async fn enroll(api: &Server, by: Who, group: Uuid, first_name: &str) -> Uuid {
    let enrolled = api
        .post(
            &format!("/v1/groups/{group}/children"),
            by,
            json!({"first_name": first_name, "last_initial": "K"}),
        )
        .await;
    enrolled.expect(201);
    enrolled.id("child_id")
}
