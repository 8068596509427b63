//! A school board's deployment, end to end: two `kring-api serve --no-projectors` instances
//! behind a load balancer and one `kring-api projector` worker, each process with a data
//! directory of its own (three machines), on one PostgreSQL database, with the settings every
//! instance must share (the master key of the key vault, the token signing secret, the VAPID
//! key, the single sign-on issuer) and one shared media store (S3-compatible object storage: the emulator the test command
//! starts).
//!
//! The load balancer here is round robin: consecutive requests go to alternate instances, so
//! every write is read back through the other instance. Reads carry `?min_position=` with the
//! highest position any write answered, which is how Kring offers read-your-writes: an app
//! keeps the `position` a write answered and passes it to its next reads, whichever instance
//! they reach (docs/api.md, "Deployment").

use crate::harness::{uuid_at, Answer, Body, Server, Who, Worker};
use crate::school::photo;
use base64::Engine;
use kring_testkit::smtp::{self, SmtpSink};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// The master key of the shared key vault (base64, 32 bytes): made for these tests only.
const MASTER_KEY: &str = "bXVsdGktaW5zdGFuY2UtdGVzdHMtbWFzdGVyLWtleSE=";
/// The token signing secret (base64, 32 bytes): made for these tests only.
const JWT_SECRET: &str = "bXVsdGktaW5zdGFuY2UtdGVzdHMtc2lnbmluZy1rZXk=";
/// The VAPID private key (base64url, 32 bytes): made for these tests only.
const VAPID_PRIVATE_KEY: &str = "Bwn2sGcLQbXx1DNg3yVqP0uUhRk9eZaT4jMf8iWoCpE";

/// What every instance and worker of the deployment is configured with alike (besides the
/// database, the media store and the single sign-on issuer, which the harness gives every
/// instance): the master key wrapping the vault's data keys, the signing secret of tokens
/// (also what invitation codes and console links are derived from), and the VAPID key of Web
/// Push.
fn shared_env() -> Vec<(String, String)> {
    [
        ("KRING_MASTER_KEY", MASTER_KEY),
        ("KRING_JWT_SECRET", JWT_SECRET),
        ("KRING_VAPID_PRIVATE_KEY", VAPID_PRIVATE_KEY),
        ("KRING_PUBLIC_URL", "https://kring.board.example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The media store every instance shares: a prefix of its own in the S3-compatible store that
/// the test command starts (moto's emulator, `scripts/lib/moto.sh`), as a board would use
/// object storage behind several instances.
struct SharedMedia {
    bucket: String,
    prefix: String,
    /// The bucket itself, reached with the same `AWS_*` settings as the instances.
    raw: object_store::aws::AmazonS3,
}

impl SharedMedia {
    fn new() -> Self {
        std::env::var("KRING_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "KRING_TEST_S3_ENDPOINT is not set. Run the tests with `scripts/test`: it starts \
                 an S3-compatible emulator (scripts/lib/moto.sh) and exports it with the AWS_* \
                 settings"
            )
        });
        let bucket = std::env::var("KRING_TEST_S3_BUCKET").unwrap_or_else(|_| "kring-test".into());
        let raw = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .expect("the S3 settings start_moto exported");
        Self {
            bucket,
            prefix: format!("deployment-{}", Uuid::now_v7().simple()),
            raw,
        }
    }

    /// How every instance reaches the shared media store: the one place that says where media
    /// live (`KRING_MEDIA_URL` and the `AWS_*` settings `start_moto` exported).
    fn shared_media_env(&self, _instance_dir: &Path) -> Vec<(String, String)> {
        let mut env = vec![(
            "KRING_MEDIA_URL".to_owned(),
            format!("s3://{}/{}", self.bucket, self.prefix),
        )];
        for key in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ALLOW_HTTP",
        ] {
            if let Ok(value) = std::env::var(key) {
                env.push((key.to_owned(), value));
            }
        }
        env
    }

    /// One stored (encrypted) object of a media item (`body` or `head`): what a copy outside
    /// Kring's reach (a replica, a backup) would hold.
    fn path(&self, media: Uuid, part: &str) -> object_store::path::Path {
        object_store::path::Path::from(format!("{}/{media}.{part}", self.prefix))
    }

    /// Whether the item's body object is in the store.
    async fn has_object(&self, media: Uuid) -> bool {
        use object_store::ObjectStore;
        match self.raw.head(&self.path(media, "body")).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("the S3 emulator answers: {e}"),
        }
    }

    /// The item's stored objects (`head`, `body`), as a copy outside Kring would keep them.
    async fn copy_objects(&self, media: Uuid) -> Vec<(String, Vec<u8>)> {
        use object_store::ObjectStore;
        let mut copy = Vec::new();
        for part in ["head", "body"] {
            let got = self
                .raw
                .get(&self.path(media, part))
                .await
                .unwrap_or_else(|e| panic!("{part}: {e}"));
            let bytes = got.bytes().await.unwrap_or_else(|e| panic!("{part}: {e}"));
            copy.push((part.to_owned(), bytes.to_vec()));
        }
        copy
    }

    /// Puts a copy made by [`SharedMedia::copy_objects`] back into the store.
    async fn put_back(&self, media: Uuid, copy: &[(String, Vec<u8>)]) {
        use object_store::ObjectStore;
        for (part, bytes) in copy {
            self.raw
                .put(&self.path(media, part), bytes.clone().into())
                .await
                .unwrap_or_else(|e| panic!("{part}: {e}"));
        }
    }
}

/// The load balancer in front of the API instances: round robin, so that consecutive requests
/// reach alternate instances.
struct Balancer {
    instances: Vec<Server>,
    next: AtomicUsize,
    /// The highest position any write answered: what every read waits for.
    written: AtomicU64,
    served: Vec<AtomicU64>,
}

impl Balancer {
    fn new(instances: Vec<Server>) -> Self {
        let served = instances.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            instances,
            next: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            served,
        }
    }

    /// The instance the next request goes to.
    fn pick(&self) -> &Server {
        let n = self.next.fetch_add(1, Ordering::SeqCst) % self.instances.len();
        self.served[n].fetch_add(1, Ordering::SeqCst);
        &self.instances[n]
    }

    fn remember(&self, answer: &Answer) {
        if answer.status < 300 {
            if let Some(p) = answer.body.get("position").and_then(Value::as_u64) {
                self.written.fetch_max(p, Ordering::SeqCst);
            }
        }
    }

    /// A write through the next instance; its position is remembered.
    async fn write(&self, method: Method, path: &str, who: Who, body: Body) -> Answer {
        let answer = self.pick().send(method, path, who, body).await;
        self.remember(&answer);
        answer
    }

    async fn post(&self, path: &str, who: Who, body: Value) -> Answer {
        self.write(Method::POST, path, who, Body::Json(body)).await
    }

    /// A read through the next instance, at the highest position written so far.
    async fn get(&self, path: &str, who: Who) -> Answer {
        let at = self.at(path);
        self.pick().send(Method::GET, &at, who, Body::Empty).await
    }

    /// `path` with `min_position` set to the highest position written so far.
    fn at(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{path}{sep}min_position={}",
            self.written.load(Ordering::SeqCst)
        )
    }

    /// A write through instance `n` itself.
    async fn write_on(&self, n: usize, method: Method, path: &str, who: Who, body: Body) -> Answer {
        let answer = self.instances[n].send(method, path, who, body).await;
        self.remember(&answer);
        answer
    }

    /// A read through instance `n` itself, at the highest position written so far.
    async fn get_on(&self, n: usize, path: &str, who: Who) -> Answer {
        let at = self.at(path);
        self.instances[n]
            .send(Method::GET, &at, who, Body::Empty)
            .await
    }

    /// The bytes of a media item through instance `n`, or the refusal's status.
    async fn bytes_on(&self, n: usize, media: Uuid, who: Who) -> Result<Vec<u8>, u16> {
        let answer = self.get_on(n, &format!("/v1/media/{media}"), who).await;
        match answer.status {
            200 => Ok(answer.bytes),
            404 => {
                answer.problem(404, "not_found");
                Err(404)
            }
            other => panic!("{}: {other} {}", answer.request, answer.text()),
        }
    }
}

/// Starts the deployment on a fresh database: the projector worker and `instances` API
/// instances with `--no-projectors` and `extra`, each in a data directory of its own.
async fn deploy(
    media: &SharedMedia,
    instances: usize,
    extra: &[&str],
) -> (String, Worker, Balancer) {
    let url = kring_testkit::fresh_postgres_database("multi")
        .await
        .url()
        .to_owned();
    let worker = Worker::projector(&url, &shared_env());
    let mut servers = Vec::new();
    let mut args = vec!["--no-projectors"];
    args.extend_from_slice(extra);
    for _ in 0..instances {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut env = shared_env();
        env.extend(media.shared_media_env(dir.path()));
        servers.push(Server::start_instance(dir, &url, &env, &args).await);
    }
    read_models_built(&servers[0]).await;
    (url, worker, Balancer::new(servers))
}

/// Waits until the projector worker has made every read model (until then an instance answers
/// `503 not_caught_up`, and `/readyz` cannot tell: a read model not yet made is at position 0,
/// and so is an empty log).
async fn read_models_built(api: &Server) {
    for _ in 0..600 {
        let ready = api
            .try_send(Method::GET, "/readyz", Who::Anonymous, Body::Empty)
            .await
            .expect("an answer");
        let status = api.replay_tool(&["status"]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
        let made = status["projections"].as_array().map_or(0, Vec::len);
        let named = ready.body["projections"].as_array().map_or(0, Vec::len);
        if named > 0 && made == named {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the projector worker never made the read models");
}

/// The `jti` of a local token (its payload is base64url JSON).
fn jti_of(token: &str) -> Uuid {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    uuid_at(&claims, "jti")
}

fn ids(list: &Value, field: &str) -> Vec<Uuid> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| uuid_at(v, field))
        .collect()
}

fn bodies(answer: &Answer) -> Vec<String> {
    answer.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("a body").to_owned())
        .collect()
}

fn who(p: Uuid) -> Who {
    Who::Person(p)
}

/// An instance started with a master key of its own (generated into its data directory)
/// cannot open the shared vault: it refuses to start (exit 3, "master key") instead of
/// sealing anything under another key.
async fn an_instance_without_the_shared_master_key_refuses_to_start(url: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let env: Vec<(String, String)> = shared_env()
        .into_iter()
        .filter(|(k, _)| k != "KRING_MASTER_KEY")
        .collect();
    let mut command = Server::command(dir.path(), Some(url), &env);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-projectors"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("kring-api starts");
    let mut status = None;
    for _ in 0..1200 {
        if let Some(s) = child.try_wait().expect("its status") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("an instance with another master key started serving");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("its stderr");
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("master key"), "{stderr}");
}

/// The school scenario through two instances and a projector worker: invitations, consents, a
/// photo, messages, a withdrawal, a removal, a revoked token and an erasure, each written
/// through one instance and read back through the other at the position it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_through_two_api_instances_and_a_projector_worker() {
    let media = SharedMedia::new();
    let (url, mut worker, lb) = deploy(&media, 2, &[]).await;
    let (a, b) = (&lb.instances[0], &lb.instances[1]);
    an_instance_without_the_shared_master_key_refuses_to_start(&url).await;

    // ---- Shared settings: a token minted with the shared secret is good on both; both
    // instances give browsers the same VAPID key to subscribe with.
    for api in [a, b] {
        let me = api.get("/v1/me", Who::Operator).await;
        assert_eq!(me.expect(200)["operator"], true);
    }
    let vapid_a = a.get("/v1/push/vapid-public-key", Who::Anonymous).await;
    let vapid_b = b.get("/v1/push/vapid-public-key", Who::Anonymous).await;
    assert_eq!(
        vapid_a.expect(200)["public_key"],
        vapid_b.expect(200)["public_key"]
    );

    // ---- A school, its staff, a class and two children, every step on the other instance.
    let registered = lb
        .post(
            "/v1/schools",
            Who::Operator,
            json!({"name": "Brede School De Kring", "brin": "31MI"}),
        )
        .await;
    registered.expect(201);
    let school = registered.id("school_id");
    let mut staff = Vec::new();
    for (by, name, role) in [
        (None, "Dirk Directeur", "director"),
        (Some(0), "Juf Anna", "teacher"),
        (Some(0), "Fee Functionaris", "compliance_officer"),
    ] {
        let by = by.map_or(Who::Operator, |i: usize| who(staff[i]));
        let added = lb
            .post(
                &format!("/v1/schools/{school}/staff"),
                by,
                json!({"display_name": name, "email": format!("{role}@kring.example"), "role": role}),
            )
            .await;
        added.expect(201);
        staff.push(added.id("person_id"));
    }
    let [director, teacher, officer] = staff[..] else {
        panic!("three staff")
    };
    let created = lb
        .post(
            &format!("/v1/schools/{school}/groups"),
            who(director),
            json!({"name": "Groep 7"}),
        )
        .await;
    created.expect(201);
    let class = created.id("group_id");
    lb.post(
        &format!("/v1/groups/{class}/staff"),
        who(director),
        json!({"person_id": teacher}),
    )
    .await
    .expect(200);
    let mut children = Vec::new();
    for name in ["Sem", "Noor"] {
        let enrolled = lb
            .post(
                &format!("/v1/groups/{class}/children"),
                who(teacher),
                json!({"first_name": name, "last_initial": "M"}),
            )
            .await;
        enrolled.expect(201);
        children.push(enrolled.id("child_id"));
    }
    let [sem, noor] = children[..] else {
        panic!("two children")
    };

    // ---- Invitations: sent through one instance, retried through the other with the same
    // Idempotency-Key (same invitation, same code, nothing written twice), accepted and
    // approved through alternate instances; the parent then sees the child through either.
    let mut parents = Vec::new();
    for (n, (child, name)) in [
        (sem, "Mama van Sem"),
        (sem, "Papa van Sem"),
        (noor, "Mama van Noor"),
    ]
    .into_iter()
    .enumerate()
    {
        // A retry sends what was sent before: the key, the body and the token.
        let key = Uuid::now_v7().to_string();
        let bearer = format!("Bearer {}", a.token(who(teacher)).expect("a token"));
        let headers = [
            ("Idempotency-Key", key.as_str()),
            ("Authorization", bearer.as_str()),
        ];
        let request = json!({"child_id": child, "email": format!("ouder{n}@thuis.example")});
        let sent = lb.instances[n % 2]
            .send_with(
                Method::POST,
                "/v1/invitations",
                who(teacher),
                Body::Json(request.clone()),
                &headers,
            )
            .await;
        sent.expect(201);
        lb.remember(&sent);
        let head = b.head().await;
        let retried = lb.instances[(n + 1) % 2]
            .send_with(
                Method::POST,
                "/v1/invitations",
                who(teacher),
                Body::Json(request),
                &headers,
            )
            .await;
        assert_eq!(
            retried.expect(201),
            &sent.body,
            "the retry on the other instance"
        );
        assert_eq!(a.head().await, head, "a retry writes nothing");
        let code = sent.body["code"].as_str().expect("a code");
        let accepted = lb
            .post(
                "/v1/invitations/accept",
                Who::Anonymous,
                json!({"code": code, "display_name": name}),
            )
            .await;
        accepted.expect(200);
        let parent = accepted.id("person_id");
        lb.post(
            &format!("/v1/invitations/{}/approve", sent.id("invitation_id")),
            who(teacher),
            json!({}),
        )
        .await
        .expect(200);
        for n in 0..2 {
            let me = lb.get_on(n, "/v1/me", who(parent)).await;
            assert_eq!(ids(&me.expect(200)["children"], "child_id"), vec![child]);
        }
        parents.push(parent);
    }
    let [mum, dad, noors_mum] = parents[..] else {
        panic!("three parents")
    };

    // ---- Consents through alternate instances, each read back on the other.
    for (parent, child) in [(mum, sem), (dad, sem), (noors_mum, noor)] {
        let decided = lb
            .write(
                Method::PUT,
                &format!("/v1/children/{child}/consents/group_communication"),
                who(parent),
                Body::Json(json!({"granted": true})),
            )
            .await;
        decided.expect(200);
        let history = lb
            .get(
                &format!("/v1/children/{child}/consents/history"),
                who(officer),
            )
            .await;
        let last = history.expect(200)["entries"]
            .as_array()
            .expect("entries")
            .last()
            .cloned()
            .expect("an entry");
        assert_eq!(
            (uuid_at(&last, "guardian_id"), last["granted"].as_bool()),
            (parent, Some(true))
        );
    }

    // ---- A photo uploaded through A, posted through B, served by both.
    let bytes = photo("schoolreis-multi");
    let uploaded = lb
        .write_on(
            0,
            Method::POST,
            "/v1/media",
            who(teacher),
            Body::Raw("image/jpeg".into(), bytes.clone()),
        )
        .await;
    uploaded.expect(201);
    let class_photo = uploaded.id("media_id");
    assert_eq!(
        lb.bytes_on(1, class_photo, who(teacher)).await,
        Ok(bytes.clone()),
        "the uploader sees the upload through the other instance"
    );
    let posted = lb
        .write_on(
            1,
            Method::POST,
            &format!("/v1/groups/{class}/posts"),
            who(teacher),
            Body::Json(json!({"body": "De schoolreis!", "media": [
                {"media_id": class_photo, "tagged_children": [sem, noor]}
            ]})),
        )
        .await;
    posted.expect(201);
    assert_eq!(posted.body["warnings"], json!([]));
    for n in 0..2 {
        for parent in [mum, dad, noors_mum] {
            assert_eq!(
                lb.bytes_on(n, class_photo, who(parent)).await,
                Ok(bytes.clone())
            );
        }
    }

    // ---- Messages: each written through one instance and read through the other.
    let started = lb
        .post(
            "/v1/conversations",
            who(mum),
            json!({"child_id": sem, "body": "Mag Sem vrijdag eerder weg?"}),
        )
        .await;
    started.expect(201);
    let conversation = started.id("conversation_id");
    let messages = format!("/v1/conversations/{conversation}/messages");
    let read = lb.get(&messages, who(teacher)).await;
    read.expect(200);
    assert_eq!(bodies(&read), ["Mag Sem vrijdag eerder weg?"]);
    lb.post(&messages, who(teacher), json!({"body": "Dat is goed."}))
        .await
        .expect(201);
    let read = lb.get(&messages, who(mum)).await;
    read.expect(200);
    assert_eq!(
        bodies(&read),
        ["Mag Sem vrijdag eerder weg?", "Dat is goed."]
    );

    // ---- Dad withdraws through B: at that position A withholds the photo from Noor's mother
    // (Sem is in it) and still shows it to Sem's parents and the teacher.
    lb.write_on(
        1,
        Method::PUT,
        &format!("/v1/children/{sem}/consents/group_communication"),
        who(dad),
        Body::Json(json!({"granted": false})),
    )
    .await
    .expect(200);
    assert_eq!(lb.bytes_on(0, class_photo, who(noors_mum)).await, Err(404));
    for viewer in [mum, dad, teacher] {
        assert_eq!(
            lb.bytes_on(0, class_photo, who(viewer)).await,
            Ok(bytes.clone())
        );
    }
    let viewers = lb
        .get_on(0, &format!("/v1/media/{class_photo}/viewers"), who(teacher))
        .await;
    let withheld = ids(&viewers.expect(200)["withheld"], "person_id");
    assert_eq!(withheld, vec![noors_mum]);
    // Granted again through A: B shows it to her again.
    lb.write_on(
        0,
        Method::PUT,
        &format!("/v1/children/{sem}/consents/group_communication"),
        who(dad),
        Body::Json(json!({"granted": true})),
    )
    .await
    .expect(200);
    assert_eq!(
        lb.bytes_on(1, class_photo, who(noors_mum)).await,
        Ok(bytes.clone())
    );

    // ---- Removal through A: B serves the photo to nobody from that position on, and its
    // object is gone from the shared media store.
    assert!(media.has_object(class_photo).await);
    lb.write_on(
        0,
        Method::DELETE,
        &format!("/v1/media/{class_photo}"),
        who(teacher),
        Body::Json(json!({"reason": "op verzoek van een ouder"})),
    )
    .await
    .expect(200);
    for viewer in [mum, noors_mum, teacher, director] {
        assert_eq!(lb.bytes_on(1, class_photo, who(viewer)).await, Err(404));
    }
    assert!(
        !media.has_object(class_photo).await,
        "the object is deleted"
    );

    // ---- Crypto-shredding across instances: B holds an upload's key in its cache (it served
    // the upload), a copy of the encrypted object survives outside Kring, and the upload is
    // discarded through A. Put back into the store, the copy is unreadable through B at once:
    // its key was destroyed in the shared vault.
    let secret = photo("alleen-voor-de-juf");
    let uploaded = lb
        .write_on(
            0,
            Method::POST,
            "/v1/media",
            who(teacher),
            Body::Raw("image/jpeg".into(), secret.clone()),
        )
        .await;
    uploaded.expect(201);
    let draft = uploaded.id("media_id");
    assert_eq!(
        lb.bytes_on(1, draft, who(teacher)).await,
        Ok(secret.clone())
    );
    let copy = media.copy_objects(draft).await;
    lb.write_on(
        0,
        Method::DELETE,
        &format!("/v1/media/{draft}"),
        who(teacher),
        Body::Json(json!({"reason": "toch niet"})),
    )
    .await
    .expect(200);
    media.put_back(draft, &copy).await;
    assert_eq!(
        lb.bytes_on(1, draft, who(teacher)).await,
        Err(404),
        "the surviving copy does not open without its key"
    );
    assert!(media.has_object(draft).await, "the copy is there");
    for (part, bytes) in &copy {
        assert!(
            !String::from_utf8_lossy(bytes).contains("alleen-voor-de-juf"),
            "the {part} object holds no plaintext"
        );
    }

    // ---- A token revoked through A is refused by B at once (the revocation answers once the
    // read models have it).
    let token = a.token(who(teacher)).expect("a token");
    let before = b.send_bearer(Method::GET, "/v1/me", &token).await;
    before.expect(200);
    lb.write_on(
        0,
        Method::POST,
        "/v1/tokens/revocations",
        Who::Operator,
        Body::Json(json!({"jti": jti_of(&token)})),
    )
    .await
    .expect(201);
    b.send_bearer(Method::GET, "/v1/me", &token)
        .await
        .problem(401, "unauthenticated");

    // ---- Sem's mother is erased through B. A read A had opened her texts for before: at the
    // erasure's position A opens none of them any more (the key was destroyed in the shared
    // vault), her guardianship has ended there, and the erasure is in B's ledger.
    let before = lb.get_on(0, &messages, who(teacher)).await;
    before.expect(200);
    assert_eq!(bodies(&before)[0], "Mag Sem vrijdag eerder weg?");
    let erased = lb
        .write_on(
            1,
            Method::POST,
            &format!("/v1/people/{mum}/erasure"),
            who(director),
            Body::Empty,
        )
        .await;
    erased.expect(202);
    let after = lb.get_on(0, &messages, who(teacher)).await;
    after.expect(200);
    assert_eq!(bodies(&after), ["[erased]", "Dat is goed."]);
    let profile = lb.get_on(0, "/v1/me", who(mum)).await;
    let profile = profile.expect(200);
    assert_eq!(profile["display_name"], "[erased]");
    let group = lb
        .get_on(0, &format!("/v1/groups/{class}"), who(teacher))
        .await;
    assert!(!ids(&group.expect(200)["guardians"], "person_id").contains(&mum));
    // Each instance writes the erasure ledger in its own data directory: the one that erased.
    let ledger = |api: &Server| {
        std::fs::read_to_string(api.data_dir().join("erasures.ledger")).unwrap_or_default()
    };
    assert!(
        ledger(b).contains(&format!("person:{mum}")),
        "{}",
        ledger(b)
    );
    assert!(!ledger(a).contains(&format!("person:{mum}")));

    // ---- The log verifies, every event of it; both instances served; the worker still runs.
    let verified = lb.get("/v1/audit/verify", who(officer)).await;
    let verified = verified.expect(200);
    assert_eq!(verified["ok"], true, "{verified}");
    a.ready().await;
    b.ready().await;
    for (n, served) in lb.served.iter().enumerate() {
        assert!(served.load(Ordering::SeqCst) > 10, "instance {n} served");
    }
    assert!(worker.is_running());
    worker.kill();
}

/// An invitation of `child` by `director` through the next instance: its mail's key.
async fn invite(lb: &Balancer, director: Uuid, child: Uuid, n: usize) -> String {
    let sent = lb
        .post(
            "/v1/invitations",
            who(director),
            json!({"child_id": child, "email": format!("ouder{n}@bron.example")}),
        )
        .await;
    sent.expect(201);
    format!("invitation:{}/email", sent.id("invitation_id"))
}

/// Both instances run the delivery worker (the default) against one SMTP server: each
/// invitation, written through either instance, is mailed exactly once (one instance delivers
/// at a time, holding a PostgreSQL advisory lock). When one instance is killed, the other
/// delivers what comes after, once each (a mail the killed one had in flight may come again
/// with its key, as at-least-once allows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_mail_each_invitation_once_and_the_survivor_takes_over() {
    let sink = SmtpSink::start().await;
    let smtp_url = sink.url();
    let media = SharedMedia::new();
    let (_url, mut worker, mut lb) = deploy(
        &media,
        2,
        &[
            "--smtp-url",
            &smtp_url,
            "--mail-from",
            "Kring <kring@board.example>",
            "--delivery-retry-base-ms",
            "50",
        ],
    )
    .await;
    let registered = lb
        .post(
            "/v1/schools",
            Who::Operator,
            json!({"name": "De Bron", "brin": "41MI"}),
        )
        .await;
    registered.expect(201);
    let school = registered.id("school_id");
    let added = lb
        .post(
            &format!("/v1/schools/{school}/staff"),
            Who::Operator,
            json!({"display_name": "Juf Bea", "email": "bea@bron.example", "role": "director"}),
        )
        .await;
    added.expect(201);
    let director = added.id("person_id");
    let created = lb
        .post(
            &format!("/v1/schools/{school}/groups"),
            who(director),
            json!({"name": "Groep 1"}),
        )
        .await;
    created.expect(201);
    let class = created.id("group_id");
    let enrolled = lb
        .post(
            &format!("/v1/groups/{class}/children"),
            who(director),
            json!({"first_name": "Ids", "last_initial": "B"}),
        )
        .await;
    enrolled.expect(201);
    let child = enrolled.id("child_id");

    let mut keys = Vec::new();
    for n in 0..12 {
        keys.push(invite(&lb, director, child, n).await);
    }
    let by_key = |mails: &[smtp::Mail]| {
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        for mail in mails {
            *by_key.entry(mail.key()).or_default() += 1;
        }
        by_key
    };
    let mails = sink
        .wait_for("every invitation mailed", |m| {
            let got = by_key(m);
            keys.iter().all(|k| got.contains_key(k))
        })
        .await;
    let got = by_key(&mails);
    for key in &keys {
        assert_eq!(got[key], 1, "{key} mailed once by the two instances");
    }

    // Kill A; B delivers from then on, whether or not it was the one delivering before.
    lb.instances.remove(0);
    let mut later = Vec::new();
    for n in 12..16 {
        later.push(invite(&lb, director, child, n).await);
    }
    let mails = sink
        .wait_for("the invitations after the kill", |m| {
            let got = by_key(m);
            later.iter().all(|k| got.contains_key(k))
        })
        .await;
    let got = by_key(&mails);
    for key in &later {
        assert_eq!(got[key], 1, "{key} mailed once by the survivor");
    }
    // A mail the killed instance had handed to the SMTP server but not yet recorded may come
    // again from the survivor, as at-least-once allows: with the same key and Message-ID.
    for key in &keys {
        let copies: Vec<_> = mails.iter().filter(|m| &m.key() == key).collect();
        assert!(
            copies
                .iter()
                .all(|m| m.header("Message-ID") == copies[0].header("Message-ID")),
            "{key}: every copy is the same mail"
        );
    }
    let dead = lb.get("/v1/operator/dead-letters", Who::Operator).await;
    assert_eq!(dead.expect(200)["dead_letters"], json!([]));
    worker.kill();
}
