//! The authorisation matrix: every route × every kind of caller → the expected status, on the
//! real binary over a real socket. Every refusal is problem+json with the code of its status and
//! writes nothing; no answer carries personal data the caller may not see (e-mail addresses
//! only in their owner's `/v1/me` and export).
//!
//! The contract: `404` where the existence of the resource is itself private (media, posts, children,
//! conversations), `403` otherwise; `401` for a missing, expired or foreign token.

use crate::harness::{Backend, Body, Server, Who};
use crate::routes;
use crate::school::{
    photo, school_today, School, ABSENCE_REASON, CHILD_NAME, GUARDIAN_NAME, MESSAGE, POST_BODY,
};
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// The kinds of caller, in the order of the matrix's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The guardian of the child the route is about (class A).
    Guardian,
    /// A parent of a child in another class.
    OtherParent,
    /// The teacher of class A.
    Teacher,
    /// The teacher of class B.
    OtherTeacher,
    /// The director.
    Director,
    /// The compliance officer.
    Officer,
    /// The platform operator.
    Operator,
    /// No token at all.
    NoToken,
    /// The guardian's token, expired.
    Expired,
    /// A token for the guardian signed by another key.
    Foreign,
}

use Role::{
    Director, Expired, Foreign, Guardian, NoToken, Officer, Operator, OtherParent, OtherTeacher,
    Teacher,
};

pub const ROLES: [Role; 10] = [
    Guardian,
    OtherParent,
    Teacher,
    OtherTeacher,
    Director,
    Officer,
    Operator,
    NoToken,
    Expired,
    Foreign,
];

impl Role {
    fn person(self, s: &School) -> Option<Uuid> {
        match self {
            Guardian => Some(s.guardian),
            OtherParent => Some(s.other_parent),
            Teacher => Some(s.teacher),
            OtherTeacher => Some(s.other_teacher),
            Director => Some(s.director),
            Officer => Some(s.officer),
            Operator | NoToken | Expired | Foreign => None,
        }
    }

    /// Who sends the requests of this column.
    pub fn who(self, s: &School) -> Who {
        match self {
            Operator => Who::Operator,
            NoToken => Who::Anonymous,
            Expired => Who::Expired(s.guardian),
            Foreign => Who::Foreign(s.guardian),
            person => Who::Person(person.person(s).expect("a person")),
        }
    }

    const fn is_staff(self) -> bool {
        matches!(self, Teacher | OtherTeacher | Director | Officer)
    }
}

/// Route × caller → status. Columns: guardian of the child, parent of another group, teacher of
/// the group, teacher of another group, director, compliance officer, operator, no token,
/// expired token, token signed by another key. Rows that destroy what they touch get fresh
/// targets per cell (see `request`); the erasures come last.
#[rustfmt::skip]
pub const MATRIX: &[(&str, [u16; 10])] = &[
    //                                                    G    OP   T    OT   D    CO   OPR  none exp  key
    ("POST /v1/schools",                                 [403, 403, 403, 403, 403, 403, 201, 401, 401, 401]),
    ("POST /v1/schools/{school_id}/staff",               [403, 403, 403, 403, 201, 403, 201, 401, 401, 401]),
    ("POST /v1/schools/{school_id}/groups",              [403, 403, 403, 403, 201, 403, 403, 401, 401, 401]),
    ("POST /v1/groups/{group_id}/staff",                 [403, 403, 403, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/groups/{group_id}/children",              [403, 403, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("GET /v1/groups/{group_id}",                        [200, 403, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("GET /v1/me",                                       [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST /v1/invitations",                             [403, 404, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("POST /v1/invitations/accept",                      [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("POST /v1/invitations/{invitation_id}/approve",     [403, 403, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/invitations/{invitation_id}/revoke",      [403, 403, 200, 403, 200, 403, 200, 401, 401, 401]),
    ("GET /v1/groups/{group_id}/invitations",            [403, 403, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("GET /v1/schools/{school_id}/consent-policy",       [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("PUT /v1/children/{child_id}/consents/{purpose}",   [200, 404, 403, 403, 403, 403, 403, 401, 401, 401]),
    ("GET /v1/children/{child_id}/consents",             [200, 404, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("GET /v1/children/{child_id}/consents/history",     [200, 404, 403, 403, 200, 200, 200, 401, 401, 401]),
    ("POST /v1/media",                                   [403, 403, 201, 201, 201, 201, 403, 401, 401, 401]),
    ("POST /v1/groups/{group_id}/posts",                 [403, 403, 201, 403, 403, 403, 403, 401, 401, 401]),
    ("POST /v1/media/{media_id}/tags",                   [403, 404, 200, 404, 200, 403, 403, 401, 401, 401]),
    ("DELETE /v1/media/{media_id}/tags/{child_id}",      [403, 404, 200, 404, 200, 403, 403, 401, 401, 401]),
    ("GET /v1/feed",                                     [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/posts/{post_id}",                          [200, 404, 200, 404, 200, 200, 200, 401, 401, 401]),
    ("GET /v1/media/{media_id}",                         [200, 404, 200, 404, 200, 200, 200, 401, 401, 401]),
    ("GET /v1/media/{media_id}/viewers",                 [403, 404, 200, 404, 200, 200, 200, 401, 401, 401]),
    ("DELETE /v1/posts/{post_id}",                       [403, 404, 200, 404, 200, 403, 200, 401, 401, 401]),
    ("DELETE /v1/media/{media_id}",                      [403, 404, 200, 404, 200, 403, 200, 401, 401, 401]),
    ("POST /v1/conversations",                           [201, 404, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("POST /v1/conversations/{conversation_id}/messages",[201, 404, 201, 404, 404, 404, 404, 401, 401, 401]),
    ("GET /v1/conversations",                            [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("GET /v1/conversations/{conversation_id}/messages", [200, 404, 200, 404, 404, 404, 404, 401, 401, 401]),
    ("PUT /v1/me/quiet-hours",                           [403, 403, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/people/{person_id}/availability",          [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST /v1/children/{child_id}/absences",            [201, 404, 403, 403, 403, 403, 403, 401, 401, 401]),
    ("GET /v1/groups/{group_id}/absences",               [403, 403, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/groups/{group_id}/activities",            [403, 403, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("POST /v1/activities/{activity_id}/volunteers",     [201, 403, 403, 403, 403, 403, 403, 401, 401, 401]),
    // Withdrawing without having volunteered breaks a rule of the activity, whoever asks.
    ("DELETE /v1/activities/{activity_id}/volunteers/me",[200, 422, 422, 422, 422, 422, 403, 401, 401, 401]),
    ("GET /v1/groups/{group_id}/activities",             [200, 403, 200, 403, 200, 403, 200, 401, 401, 401]),
    ("GET /v1/me/export",                                [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/audit/access-log",                         [403, 403, 403, 403, 403, 200, 403, 401, 401, 401]),
    // The contract names the compliance officer; the operator may verify the hash chains too.
    ("GET /v1/audit/verify",                             [403, 403, 403, 403, 403, 200, 200, 401, 401, 401]),
    // Routes the implementation adds.
    ("GET /v1/me/quiet-hours",                           [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("DELETE /v1/me/quiet-hours",                        [403, 403, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/me/notifications",                         [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST /v1/me/notifications/delivered",              [200, 404, 404, 404, 404, 404, 403, 401, 401, 401]),
    ("DELETE /v1/children/{child_id}/absences/{absence_id}", [200, 404, 403, 403, 403, 403, 403, 401, 401, 401]),
    ("DELETE /v1/activities/{activity_id}",              [403, 403, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/invitations/{invitation_id}/resend",      [403, 403, 201, 403, 201, 403, 403, 401, 401, 401]),
    // Administration and the access lifecycle. Cells that would succeed get a fresh target;
    // refused ones aim at the shared child, guardian and post.
    ("DELETE /v1/schools/{school_id}/staff/{person_id}", [403, 403, 403, 403, 200, 403, 200, 401, 401, 401]),
    ("PUT /v1/schools/{school_id}/staff/{person_id}/role", [403, 403, 403, 403, 200, 403, 200, 401, 401, 401]),
    ("DELETE /v1/groups/{group_id}/staff/{person_id}",   [403, 403, 403, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/children/{child_id}/move",                [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("DELETE /v1/groups/{group_id}/children/{child_id}", [403, 404, 403, 403, 200, 403, 403, 401, 401, 401]),
    ("PATCH /v1/children/{child_id}",                    [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    // The guardian's cell aims at another family's link: a guardian leaves only their own.
    ("DELETE /v1/children/{child_id}/guardians/{person_id}", [404, 404, 200, 403, 200, 403, 200, 401, 401, 401]),
    ("GET /v1/children/{child_id}/absences",             [200, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("PATCH /v1/posts/{post_id}",                        [403, 404, 200, 404, 403, 403, 403, 401, 401, 401]),
    ("GET /v1/schools/{school_id}/settings",             [200, 200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("PATCH /v1/schools/{school_id}/settings",           [403, 403, 403, 403, 200, 403, 200, 401, 401, 401]),
    ("POST /v1/schools/{school_id}/consent-policy",      [403, 403, 403, 403, 201, 403, 403, 401, 401, 401]),
    // A dry run: the director's cell answers the plan and writes nothing either.
    ("POST /v1/schools/{school_id}/year-transition",     [403, 403, 403, 403, 200, 403, 403, 401, 401, 401]),
    // Sign-in: everyone links their own identity (a fresh one per cell); the operator has none.
    ("POST /v1/me/sso-identity",                         [201, 201, 201, 201, 201, 201, 403, 401, 401, 401]),
    ("POST /v1/tokens/revocations",                      [403, 403, 403, 403, 403, 403, 201, 401, 401, 401]),
    // Delivery: the VAPID key needs no token; each person subscribes and removes their own
    // device; dead letters are the operator's (none here: a random id is not found).
    ("GET /v1/push/vapid-public-key",                    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("POST /v1/me/push-subscriptions",                   [201, 201, 201, 201, 201, 201, 403, 401, 401, 401]),
    ("DELETE /v1/me/push-subscriptions/{subscription_id}", [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/operator/dead-letters",                    [403, 403, 403, 403, 403, 403, 200, 401, 401, 401]),
    ("POST /v1/operator/dead-letters/{delivery_id}/retry", [403, 403, 403, 403, 403, 403, 404, 401, 401, 401]),
    // The meeting planner: staff of the round's groups run a round; a guardian of a child in
    // them books; every staff member of the school sees it; a parent of another class does not
    // learn it exists. Each cell gets a round of its own.
    ("POST /v1/groups/{group_id}/meeting-rounds",        [403, 403, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("GET /v1/meeting-rounds/{round_id}",                [200, 404, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST /v1/meeting-rounds/{round_id}/slots",         [403, 404, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("POST /v1/meeting-rounds/{round_id}/slots/{slot_id}/block", [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/meeting-rounds/{round_id}/bookings",      [201, 404, 201, 403, 201, 403, 403, 401, 401, 401]),
    ("PUT /v1/meeting-rounds/{round_id}/bookings/{booking_id}", [200, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("DELETE /v1/meeting-rounds/{round_id}/bookings/{booking_id}", [200, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/meeting-rounds/{round_id}/close",         [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/meeting-rounds/{round_id}/cancel",        [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    ("GET /v1/me/meetings",                              [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    // The calendar feed takes its key in the query, no token: any caller with the key reads it.
    ("POST /v1/me/calendar-key",                         [201, 201, 201, 201, 201, 201, 403, 401, 401, 401]),
    ("GET /v1/me/calendar.ics",                          [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // Notifications: everyone's own preferences, reads and unread counts (the operator has
    // none); a post's reads are its audience's staff's (its guardians are refused, others do
    // not learn it exists); an absence is acknowledged by the group's staff or a director (a
    // fresh one per cell that succeeds).
    ("GET /v1/me/notification-preferences",              [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("PUT /v1/me/notification-preferences",              [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("POST /v1/me/read",                                 [200, 404, 200, 404, 200, 404, 403, 401, 401, 401]),
    ("GET /v1/me/unread",                                [200, 200, 200, 200, 200, 200, 403, 401, 401, 401]),
    ("GET /v1/posts/{post_id}/reads",                    [403, 404, 200, 404, 200, 403, 403, 401, 401, 401]),
    ("POST /v1/children/{child_id}/absences/{absence_id}/acknowledgement", [403, 404, 200, 403, 200, 403, 403, 401, 401, 401]),
    // Operations: no token needed.
    ("GET /healthz",                                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET /readyz",                                      [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET /metrics",                                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET /openapi.json",                                [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // Erasures last: the refused cells aim at the shared child.
    ("POST /v1/people/{person_id}/erasure",              [403, 403, 403, 403, 202, 403, 202, 401, 401, 401]),
    ("POST /v1/children/{child_id}/erasure",             [403, 404, 403, 403, 202, 403, 202, 401, 401, 401]),
];

/// One request of a cell.
pub struct Request {
    /// Its method.
    pub method: Method,
    /// Its path (and query).
    pub path: String,
    /// Its body.
    pub body: Body,
}

fn req(method: Method, path: impl Into<String>, body: Body) -> Request {
    Request {
        method,
        path: path.into(),
        body,
    }
}

fn get(path: impl Into<String>) -> Request {
    req(Method::GET, path, Body::Empty)
}

/// A device's subscription as a browser gives it (a public push service; keys of the
/// `web-push-native` documentation's example).
fn push_subscription() -> serde_json::Value {
    json!({
        "endpoint": format!("https://push.example.com/e2e/{}", Uuid::now_v7()),
        "keys": {
            "p256dh": "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY",
            "auth": "_ordMnz7uTCmrpBTeUV4Bw"
        }
    })
}

fn post(path: impl Into<String>, body: serde_json::Value) -> Request {
    req(Method::POST, path, Body::Json(body))
}

/// A removal's body: a person's reason; the operator, no data subject, gives no free text.
fn removal(role: Role) -> Body {
    if role == Role::Operator {
        Body::Json(json!({}))
    } else {
        Body::Json(json!({"reason": "op verzoek van de ouders"}))
    }
}

/// A fresh meeting round of class A held by its teacher: three ten-minute slots on a day of its
/// own (one child's bookings in two rounds at the same time would clash).
async fn meeting_round(api: &Server, s: &School) -> Uuid {
    static DAYS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let day = 20 + DAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = (Utc::now() + Duration::days(day))
        .date_naive()
        .and_hms_opt(14, 0, 0)
        .expect("14:00")
        .and_utc();
    let slots: Vec<serde_json::Value> = (0..3)
        .map(|i| json!({"starts_at": start + Duration::minutes(10 * i), "ends_at": start + Duration::minutes(10 * i + 10), "staff": [s.teacher]}))
        .collect();
    api.post(
        &format!("/v1/groups/{}/meeting-rounds", s.class_a),
        Who::Person(s.teacher),
        json!({"title": "Tienminutengesprekken", "per": "child", "slots": slots,
               "place": {"kind": "room", "name": "Lokaal 4"}, "book_until": start - Duration::days(1)}),
    )
    .await
    .id("round_id")
}

/// A fresh round and the guardian's booking of its first slot.
async fn meeting_booking(api: &Server, s: &School) -> (Uuid, Uuid) {
    let round = meeting_round(api, s).await;
    let booking = api
        .post(
            &format!("/v1/meeting-rounds/{round}/bookings"),
            Who::Person(s.guardian),
            json!({"slot_id": 1, "child_id": s.child}),
        )
        .await
        .id("booking_id");
    (round, booking)
}

/// The request of the cell `route` × `role`, with whatever it needs made first (by the school's
/// staff, through the API).
pub async fn request(api: &Server, s: &School, route: &str, role: Role) -> Request {
    let fresh_email = || format!("nieuw-{}@school.example", Uuid::now_v7().simple());
    match route {
        "POST /v1/schools" => post(
            "/v1/schools",
            json!({"name": "De Andere School", "brin": "34CD"}),
        ),
        "POST /v1/me/sso-identity" => post(
            "/v1/me/sso-identity",
            json!({"token": api.issuer_token(&format!("e2e-{}", Uuid::now_v7().simple()))}),
        ),
        "POST /v1/tokens/revocations" => {
            post("/v1/tokens/revocations", json!({"jti": Uuid::now_v7()}))
        }
        "GET /v1/push/vapid-public-key" => get("/v1/push/vapid-public-key"),
        "POST /v1/me/push-subscriptions" => post("/v1/me/push-subscriptions", push_subscription()),
        "DELETE /v1/me/push-subscriptions/{subscription_id}" => {
            // A person's own device, subscribed for the cell; anyone else aims at a random id.
            let subscription = if matches!(role, Guardian | OtherParent) || role.is_staff() {
                api.post(
                    "/v1/me/push-subscriptions",
                    role.who(s),
                    push_subscription(),
                )
                .await
                .id("subscription_id")
            } else {
                Uuid::now_v7()
            };
            req(
                Method::DELETE,
                format!("/v1/me/push-subscriptions/{subscription}"),
                Body::Empty,
            )
        }
        "GET /v1/operator/dead-letters" => get("/v1/operator/dead-letters"),
        "GET /v1/me/notification-preferences" => get("/v1/me/notification-preferences"),
        "PUT /v1/me/notification-preferences" => req(
            Method::PUT,
            "/v1/me/notification-preferences",
            Body::Json(json!({
                "kinds": {"post": "digest", "meeting_reminder": "email"},
                "digest_at": "07:30",
                "timezone": "Europe/Amsterdam"
            })),
        ),
        "POST /v1/me/read" => post("/v1/me/read", json!({"post_ids": [s.post]})),
        "GET /v1/me/unread" => get("/v1/me/unread"),
        "GET /v1/posts/{post_id}/reads" => get(format!("/v1/posts/{}/reads", s.post)),
        "POST /v1/children/{child_id}/absences/{absence_id}/acknowledgement" => {
            let absence = if matches!(role, Teacher | Director) {
                s.absence(api).await
            } else {
                s.absence
            };
            req(
                Method::POST,
                format!(
                    "/v1/children/{}/absences/{absence}/acknowledgement",
                    s.child
                ),
                Body::Empty,
            )
        }
        "POST /v1/operator/dead-letters/{delivery_id}/retry" => req(
            Method::POST,
            format!("/v1/operator/dead-letters/{}/retry", Uuid::now_v7()),
            Body::Empty,
        ),
        "POST /v1/groups/{group_id}/meeting-rounds" => {
            let start = Utc::now() + Duration::days(15);
            post(
                format!("/v1/groups/{}/meeting-rounds", s.class_a),
                json!({"title": "Rapportgesprekken", "per": "family",
                       "slots": [{"starts_at": start, "ends_at": start + Duration::minutes(15), "staff": [s.teacher]}],
                       "place": {"kind": "online", "url": "https://meet.example/groep-a"},
                       "book_until": start - Duration::days(1)}),
            )
        }
        "GET /v1/meeting-rounds/{round_id}" => get(format!(
            "/v1/meeting-rounds/{}",
            meeting_round(api, s).await
        )),
        "POST /v1/meeting-rounds/{round_id}/slots" => {
            let round = meeting_round(api, s).await;
            let start = Utc::now() + Duration::days(16);
            post(
                format!("/v1/meeting-rounds/{round}/slots"),
                json!({"starts_at": start, "ends_at": start + Duration::minutes(10), "staff": [s.teacher]}),
            )
        }
        "POST /v1/meeting-rounds/{round_id}/slots/{slot_id}/block" => req(
            Method::POST,
            format!(
                "/v1/meeting-rounds/{}/slots/2/block",
                meeting_round(api, s).await
            ),
            Body::Empty,
        ),
        "POST /v1/meeting-rounds/{round_id}/bookings" => post(
            format!(
                "/v1/meeting-rounds/{}/bookings",
                meeting_round(api, s).await
            ),
            json!({"slot_id": 2, "child_id": s.child}),
        ),
        "PUT /v1/meeting-rounds/{round_id}/bookings/{booking_id}" => {
            let (round, booking) = meeting_booking(api, s).await;
            req(
                Method::PUT,
                format!("/v1/meeting-rounds/{round}/bookings/{booking}"),
                Body::Json(json!({"slot_id": 2})),
            )
        }
        "DELETE /v1/meeting-rounds/{round_id}/bookings/{booking_id}" => {
            let (round, booking) = meeting_booking(api, s).await;
            req(
                Method::DELETE,
                format!("/v1/meeting-rounds/{round}/bookings/{booking}"),
                Body::Empty,
            )
        }
        "POST /v1/meeting-rounds/{round_id}/close" => req(
            Method::POST,
            format!("/v1/meeting-rounds/{}/close", meeting_round(api, s).await),
            Body::Empty,
        ),
        "POST /v1/meeting-rounds/{round_id}/cancel" => req(
            Method::POST,
            format!("/v1/meeting-rounds/{}/cancel", meeting_round(api, s).await),
            Body::Empty,
        ),
        "GET /v1/me/meetings" => get("/v1/me/meetings"),
        "POST /v1/me/calendar-key" => req(Method::POST, "/v1/me/calendar-key", Body::Empty),
        "GET /v1/me/calendar.ics" => {
            let key = api
                .send(
                    Method::POST,
                    "/v1/me/calendar-key",
                    Who::Person(s.guardian),
                    Body::Empty,
                )
                .await;
            let key = key.expect(201)["key"].as_str().expect("a key").to_owned();
            get(format!("/v1/me/calendar.ics?key={key}"))
        }
        "POST /v1/schools/{school_id}/staff" => {
            let email = fresh_email();
            s.remember(None, email.clone());
            post(
                format!("/v1/schools/{}/staff", s.id),
                json!({"display_name": "Nieuwe Collega", "email": email, "role": "teacher"}),
            )
        }
        "POST /v1/schools/{school_id}/groups" => post(
            format!("/v1/schools/{}/groups", s.id),
            json!({"name": "Groep 7"}),
        ),
        "POST /v1/groups/{group_id}/staff" => {
            let teacher = s.new_teacher(api).await;
            post(
                format!("/v1/groups/{}/staff", s.class_a),
                json!({"person_id": teacher}),
            )
        }
        "POST /v1/groups/{group_id}/children" => post(
            format!("/v1/groups/{}/children", s.class_a),
            json!({"first_name": "Nieuwkomer", "last_initial": "N"}),
        ),
        "GET /v1/groups/{group_id}" => get(format!("/v1/groups/{}", s.class_a)),
        "GET /v1/me" => get("/v1/me"),
        "POST /v1/invitations" => {
            let email = fresh_email();
            s.remember(None, email.clone());
            post(
                "/v1/invitations",
                json!({"child_id": s.child, "email": email}),
            )
        }
        "POST /v1/invitations/accept" => {
            let (_, code) = s.invite(api, s.teacher, s.spare_child).await;
            post(
                "/v1/invitations/accept",
                json!({"code": code, "display_name": "Nieuwe Ouder"}),
            )
        }
        "POST /v1/invitations/{invitation_id}/approve" => {
            let invitation = s.accepted_invitation(api).await;
            post(format!("/v1/invitations/{invitation}/approve"), json!({}))
        }
        "POST /v1/invitations/{invitation_id}/revoke" => {
            let (invitation, _) = s.invite(api, s.teacher, s.spare_child).await;
            req(
                Method::POST,
                format!("/v1/invitations/{invitation}/revoke"),
                Body::Empty,
            )
        }
        "GET /v1/groups/{group_id}/invitations" => {
            get(format!("/v1/groups/{}/invitations", s.class_a))
        }
        "GET /v1/schools/{school_id}/consent-policy" => {
            get(format!("/v1/schools/{}/consent-policy", s.id))
        }
        "PUT /v1/children/{child_id}/consents/{purpose}" => req(
            Method::PUT,
            format!("/v1/children/{}/consents/internal_research", s.child),
            Body::Json(json!({"granted": true})),
        ),
        "GET /v1/children/{child_id}/consents" => get(format!("/v1/children/{}/consents", s.child)),
        "GET /v1/children/{child_id}/consents/history" => {
            get(format!("/v1/children/{}/consents/history", s.child))
        }
        "POST /v1/media" => req(
            Method::POST,
            "/v1/media",
            Body::Raw("image/jpeg".into(), photo("matrix")),
        ),
        "POST /v1/groups/{group_id}/posts" => post(
            format!("/v1/groups/{}/posts", s.class_a),
            json!({"body": "Morgen is het studiedag."}),
        ),
        "POST /v1/media/{media_id}/tags" => {
            let (_, media) = s.post_photo(api, &[]).await;
            post(
                format!("/v1/media/{media}/tags"),
                json!({"child_id": s.child}),
            )
        }
        "DELETE /v1/media/{media_id}/tags/{child_id}" => {
            let (_, media) = s.post_photo(api, &[s.child]).await;
            req(
                Method::DELETE,
                format!("/v1/media/{media}/tags/{}", s.child),
                Body::Empty,
            )
        }
        "GET /v1/feed" => get("/v1/feed"),
        "GET /v1/posts/{post_id}" => get(format!("/v1/posts/{}", s.post)),
        "GET /v1/media/{media_id}" => get(format!("/v1/media/{}", s.media)),
        "GET /v1/media/{media_id}/viewers" => get(format!("/v1/media/{}/viewers", s.media)),
        "DELETE /v1/posts/{post_id}" => {
            let (post, _) = s.post_photo(api, &[]).await;
            req(Method::DELETE, format!("/v1/posts/{post}"), removal(role))
        }
        "DELETE /v1/media/{media_id}" => {
            let (_, media) = s.post_photo(api, &[]).await;
            req(Method::DELETE, format!("/v1/media/{media}"), removal(role))
        }
        "POST /v1/conversations" => post(
            "/v1/conversations",
            json!({"child_id": s.child, "body": "Een vraag over de schoolreis."}),
        ),
        "POST /v1/conversations/{conversation_id}/messages" => post(
            format!("/v1/conversations/{}/messages", s.conversation),
            json!({"body": "Nog een vraag."}),
        ),
        "GET /v1/conversations" => get("/v1/conversations"),
        "GET /v1/conversations/{conversation_id}/messages" => {
            get(format!("/v1/conversations/{}/messages", s.conversation))
        }
        "PUT /v1/me/quiet-hours" => {
            req(Method::PUT, "/v1/me/quiet-hours", Body::Json(quiet_hours()))
        }
        "GET /v1/people/{person_id}/availability" => {
            get(format!("/v1/people/{}/availability", s.teacher))
        }
        "POST /v1/children/{child_id}/absences" => {
            let day = school_today() + Duration::days(10);
            post(
                format!("/v1/children/{}/absences", s.child),
                json!({"from": day, "to": day, "reason": "Tandarts"}),
            )
        }
        "GET /v1/groups/{group_id}/absences" => get(format!(
            "/v1/groups/{}/absences?date={}",
            s.class_a,
            school_today() + Duration::days(3)
        )),
        "POST /v1/groups/{group_id}/activities" => {
            let starts = Utc::now() + Duration::days(14);
            post(
                format!("/v1/groups/{}/activities", s.class_a),
                json!({"title": "Excursie", "starts_at": starts, "ends_at": starts + Duration::hours(3), "volunteer_slots": 3}),
            )
        }
        "POST /v1/activities/{activity_id}/volunteers" => req(
            Method::POST,
            format!("/v1/activities/{}/volunteers", s.activity),
            Body::Empty,
        ),
        "DELETE /v1/activities/{activity_id}/volunteers/me" => {
            let activity = if role == Guardian {
                let activity = s.activity(api).await;
                api.send(
                    Method::POST,
                    &format!("/v1/activities/{activity}/volunteers"),
                    Who::Person(s.guardian),
                    Body::Empty,
                )
                .await
                .expect(201);
                activity
            } else {
                s.activity
            };
            req(
                Method::DELETE,
                format!("/v1/activities/{activity}/volunteers/me"),
                Body::Empty,
            )
        }
        "GET /v1/groups/{group_id}/activities" => {
            get(format!("/v1/groups/{}/activities", s.class_a))
        }
        "GET /v1/me/export" => get("/v1/me/export"),
        "GET /v1/audit/access-log" => get("/v1/audit/access-log"),
        "GET /v1/audit/verify" => get("/v1/audit/verify"),
        "GET /v1/me/quiet-hours" => get("/v1/me/quiet-hours"),
        "DELETE /v1/me/quiet-hours" => {
            if role.is_staff() {
                api.put("/v1/me/quiet-hours", role.who(s), quiet_hours())
                    .await
                    .expect(200);
            }
            req(Method::DELETE, "/v1/me/quiet-hours", Body::Empty)
        }
        "GET /v1/me/notifications" => get("/v1/me/notifications"),
        "POST /v1/me/notifications/delivered" => post(
            "/v1/me/notifications/delivered",
            json!({"notification_ids": [s.guardian_notification]}),
        ),
        "DELETE /v1/children/{child_id}/absences/{absence_id}" => {
            let absence = if role == Guardian {
                s.absence(api).await
            } else {
                s.absence
            };
            req(
                Method::DELETE,
                format!("/v1/children/{}/absences/{absence}", s.child),
                Body::Empty,
            )
        }
        "DELETE /v1/activities/{activity_id}" => {
            let activity = s.activity(api).await;
            req(
                Method::DELETE,
                format!("/v1/activities/{activity}"),
                Body::Empty,
            )
        }
        "DELETE /v1/schools/{school_id}/staff/{person_id}" => {
            let teacher = s.new_teacher(api).await;
            req(
                Method::DELETE,
                format!("/v1/schools/{}/staff/{teacher}", s.id),
                Body::Empty,
            )
        }
        "PUT /v1/schools/{school_id}/staff/{person_id}/role" => {
            let teacher = s.new_teacher(api).await;
            req(
                Method::PUT,
                format!("/v1/schools/{}/staff/{teacher}/role", s.id),
                Body::Json(json!({"role": "compliance_officer"})),
            )
        }
        "DELETE /v1/groups/{group_id}/staff/{person_id}" => {
            let teacher = s.new_teacher(api).await;
            api.post(
                &format!("/v1/groups/{}/staff", s.class_a),
                Who::Person(s.director),
                json!({"person_id": teacher}),
            )
            .await
            .expect(200);
            req(
                Method::DELETE,
                format!("/v1/groups/{}/staff/{teacher}", s.class_a),
                Body::Empty,
            )
        }
        "POST /v1/children/{child_id}/move" => {
            let child = if matches!(role, Teacher | Director) {
                s.new_child(api).await
            } else {
                s.child
            };
            post(
                format!("/v1/children/{child}/move"),
                json!({"group_id": s.class_b}),
            )
        }
        "DELETE /v1/groups/{group_id}/children/{child_id}" => {
            let child = if role == Director {
                s.new_child(api).await
            } else {
                s.child
            };
            req(
                Method::DELETE,
                format!("/v1/groups/{}/children/{child}", s.class_a),
                Body::Empty,
            )
        }
        "PATCH /v1/children/{child_id}" => {
            let child = if matches!(role, Teacher | Director) {
                s.new_child(api).await
            } else {
                s.child
            };
            req(
                Method::PATCH,
                format!("/v1/children/{child}"),
                Body::Json(json!({"first_name": "Verbeterd"})),
            )
        }
        "DELETE /v1/children/{child_id}/guardians/{person_id}" => {
            let (child, guardian) = match role {
                Teacher | Director | Operator => {
                    let child = s.new_child(api).await;
                    (
                        child,
                        s.link(api, s.teacher, child, "Ouder Die Vertrekt").await,
                    )
                }
                Guardian => (s.other_child, s.other_parent),
                _ => (s.child, s.guardian),
            };
            req(
                Method::DELETE,
                format!("/v1/children/{child}/guardians/{guardian}"),
                Body::Empty,
            )
        }
        "GET /v1/children/{child_id}/absences" => get(format!("/v1/children/{}/absences", s.child)),
        "PATCH /v1/posts/{post_id}" => {
            let post = if role == Teacher {
                s.post_photo(api, &[]).await.0
            } else {
                s.post
            };
            req(
                Method::PATCH,
                format!("/v1/posts/{post}"),
                Body::Json(json!({"body": "Aangepaste tekst."})),
            )
        }
        "GET /v1/schools/{school_id}/settings" => get(format!("/v1/schools/{}/settings", s.id)),
        "PATCH /v1/schools/{school_id}/settings" => req(
            Method::PATCH,
            format!("/v1/schools/{}/settings", s.id),
            Body::Json(json!({"retention_days": 365})),
        ),
        "POST /v1/schools/{school_id}/consent-policy" => {
            // The current policy again: what later rows may decide stays asked for.
            let current = api
                .get(
                    &format!("/v1/schools/{}/consent-policy", s.id),
                    Who::Person(s.director),
                )
                .await;
            post(
                format!("/v1/schools/{}/consent-policy", s.id),
                json!({"purposes": current.expect(200)["purposes"]}),
            )
        }
        "POST /v1/invitations/{invitation_id}/resend" => {
            let (invitation, _) = s.invite(api, s.teacher, s.spare_child).await;
            api.send(
                Method::POST,
                &format!("/v1/invitations/{invitation}/revoke"),
                Who::Person(s.teacher),
                Body::Empty,
            )
            .await
            .expect(200);
            req(
                Method::POST,
                format!("/v1/invitations/{invitation}/resend"),
                Body::Empty,
            )
        }
        "POST /v1/schools/{school_id}/year-transition" => post(
            format!("/v1/schools/{}/year-transition", s.id),
            json!({"dry_run": true, "effective_on": "2027-08-30",
                   "groups": [{"group_id": s.class_b, "children_to": s.class_a}]}),
        ),
        "GET /healthz" | "GET /metrics" | "GET /openapi.json" => get(routes::split(route).1),
        "GET /readyz" => {
            api.ready().await;
            get("/readyz")
        }
        "POST /v1/people/{person_id}/erasure" => {
            let teacher = s.new_teacher(api).await;
            req(
                Method::POST,
                format!("/v1/people/{teacher}/erasure"),
                Body::Empty,
            )
        }
        "POST /v1/children/{child_id}/erasure" => {
            // Those who may erase get a child of their own to erase; the others aim at the
            // guardian's child, whose existence the other parent must not learn.
            let child = if matches!(role, Director | Operator) {
                s.new_child(api).await
            } else {
                s.child
            };
            req(
                Method::POST,
                format!("/v1/children/{child}/erasure"),
                Body::Empty,
            )
        }
        other => panic!("no request for {other}"),
    }
}

fn quiet_hours() -> serde_json::Value {
    json!({"timezone": "Europe/Amsterdam", "weekly": [{"day": "sunday", "start": "03:00", "end": "04:00"}]})
}

/// The code a refusal with `status` carries.
fn code_of(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "rule_violated",
        _ => "",
    }
}

/// Texts only some callers may read: the roles that may.
fn private_texts() -> Vec<(&'static str, &'static [Role])> {
    vec![
        (CHILD_NAME, &[Guardian, Teacher, Director]),
        (GUARDIAN_NAME, &[Guardian, Teacher, Director]),
        (MESSAGE, &[Guardian, Teacher]),
        (ABSENCE_REASON, &[Guardian, Teacher, Director]),
        (POST_BODY, &[Guardian, Teacher, Director, Officer, Operator]),
    ]
}

/// What is wrong with the answer `text` of `route` to `role`, as far as personal data goes.
fn leaks(s: &School, route: &str, role: Role, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let own_profile = matches!(route, "GET /v1/me" | "GET /v1/me/export");
    for (owner, email) in s.emails() {
        let allowed = own_profile && owner.is_some() && owner == role.person(s);
        if !allowed && text.contains(&email) {
            found.push(format!("the e-mail address {email} of {owner:?}"));
        }
    }
    for (marker, allowed) in private_texts() {
        if !allowed.contains(&role) && text.contains(marker) {
            found.push(format!("{marker:?}"));
        }
    }
    found
}

async fn authorization_matrix(backend: Backend) {
    let api = Server::start(backend).await;
    let s = School::build(&api).await;

    // The table covers every route, once.
    let mut listed: Vec<&str> = MATRIX.iter().map(|(route, _)| *route).collect();
    listed.sort_unstable();
    let before = listed.len();
    listed.dedup();
    assert_eq!(listed.len(), before, "a route is listed twice");
    let mut every = routes::all();
    every.sort_unstable();
    assert_eq!(listed, every, "the matrix covers every route");

    let mut failures = Vec::new();
    let mut cells = 0;
    for (route, expected) in MATRIX {
        let (method, _) = routes::split(route);
        for (role, want) in ROLES.iter().zip(expected) {
            let request = request(&api, &s, route, *role).await;
            assert_eq!(request.method.as_str(), method, "{route}");
            let path = if request.method == Method::GET {
                api.fresh(&request.path)
            } else {
                request.path.clone()
            };
            // Only a refusal is checked for having written nothing.
            let head = if *want >= 400 { api.head().await } else { 0 };
            let answer = api
                .send(request.method, &path, role.who(&s), request.body)
                .await;
            cells += 1;
            let cell = format!("{route} × {role:?}");
            if answer.status != *want {
                failures.push(format!(
                    "{cell}: expected {want}, got {}: {}",
                    answer.status,
                    answer.text().chars().take(300).collect::<String>()
                ));
                continue;
            }
            if *want >= 400 {
                if !answer.is_problem() || answer.body["code"] != code_of(*want) {
                    failures.push(format!(
                        "{cell}: expected problem+json with code {:?}: {:?} {}",
                        code_of(*want),
                        answer.content_type,
                        answer.text()
                    ));
                }
                let after = api.head().await;
                if after != head {
                    failures.push(format!(
                        "{cell}: refused, yet the log moved from {head} to {after}"
                    ));
                }
            }
            let leaked = leaks(&s, route, *role, &answer.text());
            if !leaked.is_empty() {
                failures.push(format!("{cell}: answers {}", leaked.join(", ")));
            }
        }
    }
    assert_eq!(cells, MATRIX.len() * ROLES.len());

    // The whole-school group: a parent sees its staff and their own child, not every pupil and
    // parent of the school; a parent of class A is no member of class B.
    let whole = api
        .get(
            &format!("/v1/groups/{}", s.school_group),
            OtherParent.who(&s),
        )
        .await;
    let listed = whole.expect(200);
    let children: Vec<&str> = listed["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["child_id"].as_str())
        .collect();
    assert_eq!(children, [s.other_child.to_string()]);
    for private in [CHILD_NAME, GUARDIAN_NAME] {
        assert!(
            !whole.text().contains(private),
            "{private} in {}",
            whole.text()
        );
    }
    api.get(&format!("/v1/groups/{}", s.class_b), Guardian.who(&s))
        .await
        .expect(403);
    assert!(
        failures.is_empty(),
        "{} of {cells} cells of the authorisation matrix fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_on_sqlite() {
    authorization_matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_on_postgres() {
    authorization_matrix(Backend::Postgres).await;
}
