//! A real server on a real socket (SQLite files in a temporary directory, or a fresh PostgreSQL
//! database) and a small school built through the API: the fixture of the API's tests that
//! call it over HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use kring_api::server::{start, Running, ServeOptions};
use kring_api::Caller;
use kring_domain::{ChildId, GroupId, PersonId, SchoolId};
use kring_projections::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// A running server and a client.
pub struct Api {
    /// The server.
    pub running: Running,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

/// An answer: status and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
    /// The raw body text.
    pub text: String,
    /// The `Content-Type` (empty when none).
    pub content_type: String,
}

impl Answer {
    /// The body's `code` field (problem documents).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status, showing the body on failure.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        self
    }

    /// The body's `position`.
    pub fn position(&self) -> u64 {
        self.body["position"].as_u64().expect("a position")
    }
}

impl Api {
    /// On SQLite files in a fresh temporary data directory.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    /// On SQLite files in a fresh temporary data directory, with `configure` applied to the
    /// server's options.
    pub async fn sqlite_with(configure: impl FnOnce(&mut ServeOptions)) -> Self {
        Self::on(None, configure).await
    }

    /// On a fresh PostgreSQL database (event log, vault and read models).
    pub async fn postgres(label: &str) -> Self {
        Self::postgres_with(label, |_| {}).await
    }

    /// On a fresh PostgreSQL database, with `configure` applied to the server's options.
    pub async fn postgres_with(label: &str, configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let db = kring_testkit::fresh_postgres_database(label).await;
        Self::on(Some(db.url().to_owned()), configure).await
    }

    /// A server (without rate limits) on `database_url`, or on SQLite files without one; its
    /// data directory is a fresh temporary one.
    async fn on(database_url: Option<String>, configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = ServeOptions::new(Config {
            data_dir: dir.path().to_owned(),
            database_url,
            eventstore_url: None,
        })
        .without_rate_limits();
        configure(&mut options);
        Self {
            running: start(options).await.unwrap(),
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// The installation's data directory (SQLite files, vault, media).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A request to `path` on this server, to add headers and a body to and [`Api::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.running.url()))
    }

    /// Sends `req` and reads the answer (a body that is not JSON is `Null`, its text kept).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            text,
            content_type,
        }
    }

    /// Stops the server and starts another on the same installation (a crash and a restart:
    /// nothing the first process held in memory survives).
    pub async fn restart(&mut self) {
        let config = self.running.state.system.config.clone();
        self.running.stop();
        self.running = start(ServeOptions::new(config).without_rate_limits())
            .await
            .unwrap();
    }

    /// The event types of `stream`, in order.
    pub async fn event_types(&self, stream: kring_domain::StreamName) -> Vec<String> {
        use kring_store::EventStoreExt;
        self.running
            .state
            .system
            .store
            .read_stream_to_end(&stream)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// A token for `caller`, valid for an hour.
    pub fn token(&self, caller: Caller) -> String {
        self.running
            .state
            .auth
            .mint(caller, chrono::Duration::hours(1))
            .unwrap()
    }

    /// A token for a person.
    pub fn person(&self, p: PersonId) -> String {
        self.token(Caller::Person(p))
    }

    /// A token for the operator.
    pub fn operator(&self) -> String {
        self.token(Caller::Operator)
    }

    /// Calls the API.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    /// Calls the API with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.request(method, path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    /// `GET path` as `token`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// `GET path?min_position=<head>`: reads after every write so far.
    pub async fn get_fresh(&self, path: &str, token: &str) -> Answer {
        let head = self.head().await;
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!("{path}{sep}min_position={head}"), token)
            .await
    }

    /// `POST path` as `token` with `body`.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `PUT path` as `token` with `body`.
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// The event log's head.
    pub async fn head(&self) -> u64 {
        use kring_store::EventStore;
        self.running.state.system.store.head().await.unwrap()
    }

    /// Waits until every read model has applied the log up to its head.
    pub async fn caught_up(&self) {
        self.running.state.catch_up().await.unwrap();
    }
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_str().unwrap().parse().unwrap()
}

/// A school built through the API: two class groups, staff, three children.
pub struct School {
    /// The school.
    pub school_id: SchoolId,
    /// Its whole-school group.
    pub school_group: GroupId,
    /// Class group 1 (children a and b).
    pub group: GroupId,
    /// Class group 2 (child c).
    pub group2: GroupId,
    /// The director.
    pub director: PersonId,
    /// The teacher of group 1.
    pub teacher: PersonId,
    /// The teacher of group 2.
    pub teacher2: PersonId,
    /// The compliance officer.
    pub officer: PersonId,
    /// Children of group 1.
    pub child_a: ChildId,
    /// Children of group 1.
    pub child_b: ChildId,
    /// The child of group 2.
    pub child_c: ChildId,
}

impl School {
    /// Builds the school as the operator and its director would.
    pub async fn build(api: &Api, name: &str) -> Self {
        let op = api.operator();
        let s = api
            .post(
                "/v1/schools",
                Some(&op),
                json!({"name": name, "brin": "12AB"}),
            )
            .await
            .expect(201);
        let school_id = SchoolId::from_uuid(uuid_of(&s.body["school_id"]));
        let school_group = GroupId::from_uuid(uuid_of(&s.body["school_group_id"]));
        let staff = |name: &str, role: &str| json!({"display_name": name, "email": format!("{}@school.example", name.to_lowercase()), "role": role});
        let path = format!("/v1/schools/{school_id}/staff");
        let director = api
            .post(&path, Some(&op), staff("Directeur", "director"))
            .await
            .expect(201);
        let director = PersonId::from_uuid(uuid_of(&director.body["person_id"]));
        let dir = api.person(director);
        let mut people = Vec::new();
        for (n, role) in [
            ("Juf", "teacher"),
            ("Meester", "teacher"),
            ("Privacy", "compliance_officer"),
        ] {
            let p = api
                .post(&path, Some(&dir), staff(n, role))
                .await
                .expect(201);
            people.push(PersonId::from_uuid(uuid_of(&p.body["person_id"])));
        }
        let mut groups = Vec::new();
        for g in ["Groep 3", "Groep 4"] {
            let r = api
                .post(
                    &format!("/v1/schools/{school_id}/groups"),
                    Some(&dir),
                    json!({"name": g}),
                )
                .await
                .expect(201);
            groups.push(GroupId::from_uuid(uuid_of(&r.body["group_id"])));
        }
        for (g, t) in [(groups[0], people[0]), (groups[1], people[1])] {
            api.post(
                &format!("/v1/groups/{g}/staff"),
                Some(&dir),
                json!({"person_id": t}),
            )
            .await
            .expect(200);
        }
        let mut children = Vec::new();
        for (g, first) in [
            (groups[0], "Sanne"),
            (groups[0], "Daan"),
            (groups[1], "Noor"),
        ] {
            let r = api
                .post(
                    &format!("/v1/groups/{g}/children"),
                    Some(&dir),
                    json!({"first_name": first, "last_initial": "J"}),
                )
                .await
                .expect(201);
            children.push(ChildId::from_uuid(uuid_of(&r.body["child_id"])));
        }
        Self {
            school_id,
            school_group,
            group: groups[0],
            group2: groups[1],
            director,
            teacher: people[0],
            teacher2: people[1],
            officer: people[2],
            child_a: children[0],
            child_b: children[1],
            child_c: children[2],
        }
    }

    /// The staff member responsible for `child`'s group.
    pub fn teacher_of(&self, child: ChildId) -> PersonId {
        if child == self.child_c {
            self.teacher2
        } else {
            self.teacher
        }
    }

    /// Invites a parent for `child`: `(invitation id, code)`.
    pub async fn invite(&self, api: &Api, child: ChildId, email: &str) -> (Uuid, String) {
        let r = api
            .post(
                "/v1/invitations",
                Some(&api.person(self.teacher_of(child))),
                json!({"child_id": child, "email": email}),
            )
            .await
            .expect(201);
        (
            uuid_of(&r.body["invitation_id"]),
            r.body["code"].as_str().unwrap().to_owned(),
        )
    }

    /// Invites, accepts and approves: a linked guardian of `child`.
    pub async fn guardian(&self, api: &Api, child: ChildId, name: &str) -> PersonId {
        let email = format!("{}@home.example", name.to_lowercase());
        let (invitation, code) = self.invite(api, child, &email).await;
        let a = api
            .post(
                "/v1/invitations/accept",
                None,
                json!({"code": code, "display_name": name}),
            )
            .await
            .expect(200);
        let person = PersonId::from_uuid(uuid_of(&a.body["person_id"]));
        api.post(
            &format!("/v1/invitations/{invitation}/approve"),
            Some(&api.person(self.teacher_of(child))),
            json!({}),
        )
        .await
        .expect(200);
        person
    }
}
