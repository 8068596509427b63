//! `kring-api serve --demo`: a living school to try in a minute.
//!
//! Seeds, once, a school through the public HTTP API of the running server — exactly what a
//! school app would do: a director, two teachers and a compliance officer; two class groups
//! and the school group; six children; parents invited, accepted and approved; mixed consents
//! (one parent withdrew `group_communication`, so a photo of that child is withheld from the
//! other parents); posts with photos. Then the director sets the school's settings (default
//! quiet hours for staff, two years' retention), publishes consent-policy version 2 (it rewords
//! `school_communication`, so every family is asked to decide on it again), opens Groep 6 and
//! moves Liam there from Groep 5. Writes `DIR/demo.json` with every id and a token per demo
//! person. When `DIR/demo.json` exists the seed is skipped, so restarting with `--demo` keeps
//! the same school.

use crate::auth::Caller;
use crate::state::AppState;
use kring_domain::PersonId;
use serde_json::{json, Value};
use std::path::PathBuf;
use uuid::Uuid;

/// A 1×1 PNG: the demo's photos (bytes are stored encrypted like any upload).
const PHOTO: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

struct Client {
    http: reqwest::Client,
    base: String,
    state: AppState,
}

impl Client {
    fn token(&self, caller: Caller) -> Result<String, String> {
        self.state
            .auth
            .mint(caller, chrono::Duration::days(90))
            .map_err(|e| e.detail)
    }

    async fn send(
        &self,
        caller: Option<Caller>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        // A rate-limited request is sent again when the server says it may be.
        let (status, text) = loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base));
            if let Some(caller) = caller {
                req = req.bearer_auth(self.token(caller)?);
            }
            if let Some(body) = &body {
                req = req.json(body);
            }
            let res = req
                .send()
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?;
            let status = res.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let wait = res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_u64);
                tokio::time::sleep(std::time::Duration::from_secs(wait.min(10))).await;
                continue;
            }
            let text = res
                .text()
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?;
            break (status, text);
        };
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, caller: Option<Caller>, path: &str, body: Value) -> Result<Value, String> {
        self.send(caller, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn put(&self, caller: Caller, path: &str, body: Value) -> Result<Value, String> {
        self.send(Some(caller), reqwest::Method::PUT, path, Some(body))
            .await
    }

    async fn patch(&self, caller: Caller, path: &str, body: Value) -> Result<Value, String> {
        self.send(Some(caller), reqwest::Method::PATCH, path, Some(body))
            .await
    }

    async fn get(&self, caller: Caller, path: &str) -> Result<Value, String> {
        self.send(Some(caller), reqwest::Method::GET, path, None)
            .await
    }

    async fn upload(&self, caller: Caller) -> Result<String, String> {
        let res = self
            .http
            .post(format!("{}/v1/media", self.base))
            .bearer_auth(self.token(caller)?)
            .header("content-type", "image/png")
            .body(PHOTO.to_vec())
            .send()
            .await
            .map_err(|e| format!("POST /v1/media: {e}"))?;
        let status = res.status();
        let value: Value = res
            .json()
            .await
            .map_err(|e| format!("POST /v1/media: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST /v1/media: {status}: {value}"));
        }
        id(&value, "media_id")
    }
}

fn id(value: &Value, field: &str) -> Result<String, String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the answer has no {field}: {value}"))
}

fn person(id: &str) -> Result<Caller, String> {
    id.parse::<PersonId>()
        .map(Caller::Person)
        .map_err(|e| format!("bad person id {id}: {e}"))
}

/// Seeds the demo school through the server at `base` unless `DIR/demo.json` exists; answers
/// the path of `demo.json`.
///
/// # Errors
/// A request of the seed failed (the message names it).
#[expect(clippy::too_many_lines)]
pub async fn seed(state: &AppState, base: &str) -> Result<PathBuf, String> {
    let path = state.system.config.data_dir.join("demo.json");
    if path.exists() {
        return Ok(path);
    }
    let c = Client {
        http: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_owned(),
        state: state.clone(),
    };
    let op = Some(Caller::Operator);
    let school = c
        .post(
            op,
            "/v1/schools",
            json!({"name": "Basisschool De Regenboog", "brin": "99ZZ"}),
        )
        .await?;
    let school_id = id(&school, "school_id")?;
    let school_group_id = id(&school, "school_group_id")?;
    let mut people = serde_json::Map::new();
    let staff = |name: &'static str, email: &'static str, role: &'static str| {
        let c = &c;
        let school_id = school_id.clone();
        async move {
            let r = c
                .post(
                    Some(Caller::Operator),
                    &format!("/v1/schools/{school_id}/staff"),
                    json!({"display_name": name, "email": email, "role": role}),
                )
                .await?;
            id(&r, "person_id")
        }
    };
    let director = staff("Marieke de Vries", "directie@regenboog.example", "director").await?;
    let juf_anna = staff("Juf Anna", "anna@regenboog.example", "teacher").await?;
    let meester_tim = staff("Meester Tim", "tim@regenboog.example", "teacher").await?;
    let officer = staff(
        "Pieter Jansen (FG)",
        "fg@regenboog.example",
        "compliance_officer",
    )
    .await?;
    let dir = Some(person(&director)?);
    let mut groups = Vec::new();
    for (name, teacher) in [("Groep 3", &juf_anna), ("Groep 5", &meester_tim)] {
        let g = c
            .post(
                dir,
                &format!("/v1/schools/{school_id}/groups"),
                json!({"name": name}),
            )
            .await?;
        let group_id = id(&g, "group_id")?;
        c.post(
            dir,
            &format!("/v1/groups/{group_id}/staff"),
            json!({"person_id": teacher}),
        )
        .await?;
        groups.push((name, group_id, teacher.clone()));
    }
    let names = [
        [("Sanne", "B"), ("Daan", "K"), ("Noor", "V")],
        [("Liam", "J"), ("Emma", "D"), ("Milan", "S")],
    ];
    let mut children = Vec::new();
    let mut guardians = Vec::new();
    for ((group_name, group_id, teacher), kids) in groups.iter().zip(names) {
        let teacher = Some(person(teacher)?);
        for (first, initial) in kids {
            let r = c
                .post(
                    teacher,
                    &format!("/v1/groups/{group_id}/children"),
                    json!({"first_name": first, "last_initial": initial}),
                )
                .await?;
            let child_id = id(&r, "child_id")?;
            // Two parents for each child.
            let mut parents = Vec::new();
            for (n, label) in ["Ouder 1", "Ouder 2"].iter().enumerate() {
                let email = format!(
                    "{}.{}{}@ouders.example",
                    first.to_lowercase(),
                    initial.to_lowercase(),
                    n + 1
                );
                let inv = c
                    .post(
                        teacher,
                        "/v1/invitations",
                        json!({"child_id": child_id, "email": email}),
                    )
                    .await?;
                let invitation_id = id(&inv, "invitation_id")?;
                let accepted = c
                    .post(
                        None,
                        "/v1/invitations/accept",
                        json!({"code": id(&inv, "code")?, "display_name": format!("{label} van {first}")}),
                    )
                    .await?;
                let parent = id(&accepted, "person_id")?;
                c.post(
                    teacher,
                    &format!("/v1/invitations/{invitation_id}/approve"),
                    json!({}),
                )
                .await?;
                parents.push(parent);
            }
            children.push(
                json!({"child_id": child_id, "first_name": first, "last_initial": initial,
                "group": group_name, "group_id": group_id, "guardians": parents}),
            );
            guardians.push((child_id, first, parents));
        }
    }
    // Consents: both parents grant group and school communication, except Daan's second
    // parent, who withdrew group_communication: Daan's photos in Groep 3 are withheld from the
    // other parents.
    for (child_id, first, parents) in &guardians {
        for parent in parents {
            for purpose in ["group_communication", "school_communication"] {
                c.put(
                    person(parent)?,
                    &format!("/v1/children/{child_id}/consents/{purpose}"),
                    json!({"granted": true, "method": "app"}),
                )
                .await?;
            }
        }
        if *first == "Daan" {
            c.put(
                person(&parents[1])?,
                &format!("/v1/children/{child_id}/consents/group_communication"),
                json!({"granted": false, "method": "app"}),
            )
            .await?;
        }
    }
    let group3 = groups[0].1.clone();
    let anna = person(&juf_anna)?;
    let photo1 = c.upload(anna).await?;
    let photo2 = c.upload(anna).await?;
    let post = c
        .post(
            Some(anna),
            &format!("/v1/groups/{group3}/posts"),
            json!({"body": "Vandaag hebben we in het bos gespeeld!", "media": [
                {"media_id": photo1, "tagged_children": [guardians[0].0]},
                {"media_id": photo2, "tagged_children": [guardians[0].0, guardians[1].0]},
            ]}),
        )
        .await?;
    let director_photo = c.upload(person(&director)?).await?;
    let school_post = c
        .post(
            dir,
            &format!("/v1/groups/{school_group_id}/posts"),
            json!({"body": "Welkom op De Regenboog! De schoolfotograaf komt op 3 december.",
                "media": [{"media_id": director_photo, "tagged_children": []}]}),
        )
        .await?;
    // Juf Anna's round of conversations in two weeks, and the first parent's booking.
    let day = (chrono::Utc::now() + chrono::Duration::days(14)).date_naive();
    let round = c
        .post(
            Some(person(&juf_anna)?),
            &format!("/v1/groups/{group3}/meeting-rounds"),
            json!({"title": "Tienminutengesprekken", "per": "child",
                "generate": {"days": [{"date": day, "from": "15:00", "to": "17:00"}],
                    "slot_minutes": 10, "break_minutes": 5, "staff": [juf_anna]},
                "place": {"kind": "room", "name": "Lokaal 3"},
                "book_until": chrono::Utc::now() + chrono::Duration::days(12)}),
        )
        .await?;
    let round_id = id(&round, "round_id")?;
    let booking = c
        .post(
            Some(person(&guardians[0].2[0])?),
            &format!("/v1/meeting-rounds/{round_id}/bookings"),
            json!({"slot_id": 2, "child_id": guardians[0].0}),
        )
        .await?;
    // The director's year: settings, a reworded policy, a new group and a moved child.
    let director_caller = person(&director)?;
    let weekday_evenings: Vec<Value> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|day| json!({"day": day, "start": "18:00", "end": "07:30"}))
        .collect();
    c.patch(
        director_caller,
        &format!("/v1/schools/{school_id}/settings"),
        json!({"retention_days": 730, "default_quiet_hours":
            {"timezone": "Europe/Amsterdam", "weekly": weekday_evenings}}),
    )
    .await?;
    let mut policy = c
        .get(
            director_caller,
            &format!("/v1/schools/{school_id}/consent-policy"),
        )
        .await?;
    if let Some(purposes) = policy["purposes"].as_array_mut() {
        for p in purposes {
            if p["purpose"] == "school_communication" {
                p["description"] = json!(
                    "Foto's en video's voor de hele school, ook in de nieuwsbrief en op de schermen in de hal."
                );
            }
        }
    }
    let published = c
        .post(
            dir,
            &format!("/v1/schools/{school_id}/consent-policy"),
            json!({"purposes": policy["purposes"]}),
        )
        .await?;
    let group6 = c
        .post(
            dir,
            &format!("/v1/schools/{school_id}/groups"),
            json!({"name": "Groep 6"}),
        )
        .await?;
    let group6_id = id(&group6, "group_id")?;
    c.post(
        dir,
        &format!("/v1/groups/{group6_id}/staff"),
        json!({"person_id": meester_tim}),
    )
    .await?;
    let liam = guardians[3].0.clone();
    c.post(
        dir,
        &format!("/v1/children/{liam}/move"),
        json!({"group_id": group6_id}),
    )
    .await?;
    if let Some(record) = children.get_mut(3) {
        record["moved_from"] = record["group_id"].clone();
        record["group"] = json!("Groep 6");
        record["group_id"] = json!(group6_id);
    }
    groups.push(("Groep 6", group6_id.clone(), meester_tim.clone()));

    let mut tokens = serde_json::Map::new();
    tokens.insert("operator".into(), c.token(Caller::Operator)?.into());
    for (label, p) in [
        ("director", &director),
        ("teacher_groep_3", &juf_anna),
        ("teacher_groep_5", &meester_tim),
        ("compliance_officer", &officer),
    ] {
        people.insert(
            label.into(),
            json!({"person_id": p, "token": c.token(person(p)?)?}),
        );
    }
    for (_, first, parents) in &guardians {
        for (n, parent) in parents.iter().enumerate() {
            people.insert(
                format!("parent_{}_{}", first.to_lowercase(), n + 1),
                json!({"person_id": parent, "token": c.token(person(parent)?)?}),
            );
        }
    }
    let demo = json!({
        "base_url": c.base,
        "school_id": school_id,
        "school_group_id": school_group_id,
        "groups": groups.iter().map(|(n, g, t)| json!({"name": n, "group_id": g, "teacher": t})).collect::<Vec<_>>(),
        "children": children,
        "people": people,
        "operator_token": tokens["operator"],
        "consent_policy_version": published["version"],
        "moved": {"child_id": liam, "from_group_id": groups[1].1, "to_group_id": group6_id},
        "meeting_rounds": [{"round_id": round_id, "group_id": group3, "bookings": [id(&booking, "booking_id")?]}],
        "posts": [
            {"post_id": id(&post, "post_id")?, "group_id": group3, "media": [photo1, photo2], "warnings": post["warnings"]},
            {"post_id": id(&school_post, "post_id")?, "group_id": school_group_id, "media": [director_photo]},
        ],
        "try": [
            "curl -H \"Authorization: Bearer $TOKEN\" BASE/v1/me",
            "curl -H \"Authorization: Bearer $TOKEN\" BASE/v1/feed",
            "curl -H \"Authorization: Bearer $TEACHER_TOKEN\" BASE/v1/media/MEDIA_ID/viewers",
        ],
        "seeded_at": chrono::Utc::now(),
        "id": Uuid::now_v7(),
    });
    let text = serde_json::to_string_pretty(&demo).map_err(|e| e.to_string())?;
    // Tokens are secrets: owner-only, like the keys beside it.
    kring_store::vault::create_private(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
