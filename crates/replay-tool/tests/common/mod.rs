//! Test harness: a real installation laid out exactly as `System` opens it — SQLite files in
//! a data directory, or a fresh PostgreSQL database through `KRING_DATABASE_URL` — with a
//! simulated school written through the key vault; and the real `replay-tool` binary run
//! against it as a child process.

#![allow(dead_code, clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use kring_domain::conversation::ConversationAction;
use kring_domain::simulation::World;
use kring_domain::{
    Actor, ChildId, ConversationId, GroupId, MediaId, MessageId, PersonId, Purpose,
};
use kring_projections::{Config, Mode, System};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where an installation keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database (event log, vault and read models).
    Postgres,
}

/// A real installation.
pub struct Installation {
    /// The open system, as the API would hold it.
    pub system: System,
    /// The data directory.
    pub data_dir: PathBuf,
    /// `KRING_DATABASE_URL` for the child process, on PostgreSQL.
    pub database_url: Option<String>,
    written: usize,
    _dir: tempfile::TempDir,
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Installation {
    /// A fresh installation on `backend`.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("kring-data");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                kring_testkit::fresh_postgres_database("replay_tool")
                    .await
                    .url()
                    .to_owned(),
            ),
        };
        let config = Config {
            data_dir: data_dir.clone(),
            database_url: database_url.clone(),
            eventstore_url: None,
        };
        let system = System::open(config, Mode::CreateIfMissing).await.unwrap();
        Self {
            system,
            data_dir,
            database_url,
            written: 0,
            _dir: dir,
        }
    }

    /// Seals and appends the part of the world's log not written yet.
    pub async fn write(&mut self, world: &World) {
        for r in &world.log[self.written..] {
            let meta = Metadata::new(r.at, r.actor);
            let sealed = self.system.vault.seal(&r.event, meta).await.unwrap();
            self.system
                .store
                .append(&r.stream, ExpectedVersion::Any, vec![sealed])
                .await
                .unwrap();
        }
        self.written = world.log.len();
    }

    /// Writes the world and brings the read models up to date, as the API's projector would.
    pub async fn sync(&mut self, world: &World) {
        self.write(world).await;
        let projector = self.system.projector().await.unwrap();
        projector.catch_up().await.unwrap();
    }

    /// The binary, with this installation's configuration and nothing from the test's
    /// environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-tool"));
        for var in [
            "KRING_DATA_DIR",
            "KRING_DATABASE_URL",
            "KRING_EVENTSTORE_URL",
            "KRING_MASTER_KEY",
            "KRING_ANCHOR_KEY",
            "KRING_ANCHORS",
            "KRING_ANCHOR_PUBLIC_KEY",
        ] {
            cmd.env_remove(var);
        }
        if let Some(url) = &self.database_url {
            cmd.env("KRING_DATABASE_URL", url);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs the binary with `--data-dir DIR` first, then `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.arg("--data-dir").arg(&self.data_dir).args(args);
        run(cmd)
    }
}

/// Runs a prepared command to its end.
pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the teacher writes to A's guardians.
pub const TEACHER_MESSAGE: &str = "Sanne had a great week";
/// What A's first guardian answers.
pub const GUARDIAN_REPLY: &str = "Thank you, see you Monday";

/// The story the tests tell: one class, a photo of child A, and A's guardians changing their
/// minds about group communication.
pub struct Story {
    /// The simulated school.
    pub world: World,
    /// The class.
    pub group: GroupId,
    /// The class's teacher.
    pub teacher: PersonId,
    /// Child A, tagged in the photo.
    pub child: ChildId,
    /// A's guardians.
    pub guardians: [PersonId; 2],
    /// The guardians of A's classmates.
    pub other_parents: Vec<PersonId>,
    /// The photo.
    pub media: MediaId,
    /// Before any decision about A.
    pub t_before: DateTime<Utc>,
    /// After the first guardian granted group communication.
    pub t_one_grant: DateTime<Utc>,
    /// After both granted and the photo was posted.
    pub t_posted: DateTime<Utc>,
    /// After the second guardian withdrew.
    pub t_withdrawn: DateTime<Utc>,
    /// A's decisions in order: guardian, purpose, granted, effective after.
    pub decisions: Vec<(PersonId, Purpose, bool, bool)>,
}

impl Story {
    /// Plays the story.
    pub fn play() -> Self {
        use Purpose::{GroupCommunication as Group, PublicCommunication, SchoolCommunication};

        let mut world = World::with_classes(2, 3, 2);
        let group = world.groups[0];
        let teacher = world.staff[1]; // staff[0] is the director
        let child = world.child_ids[0];
        let guardians = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
        let other_parents: Vec<PersonId> = world.child_ids[1..3]
            .iter()
            .flat_map(|c| world.guardians_of(*c))
            .collect();
        let [g1, g2] = guardians;
        let step = |w: &mut World| w.advance(Duration::hours(1));

        step(&mut world);
        let t_before = world.now;
        // Classmates' guardians consent too: noise the answers must not mix in.
        for c in world.child_ids.clone() {
            if c != child {
                for g in world.guardians_of(c) {
                    world.decide_consent(g, c, Group, true).unwrap();
                }
            }
        }
        step(&mut world);
        world
            .decide_consent(g1, child, SchoolCommunication, true)
            .unwrap();
        step(&mut world);
        world.decide_consent(g1, child, Group, true).unwrap();
        step(&mut world);
        let t_one_grant = world.now;
        step(&mut world);
        world.decide_consent(g2, child, Group, true).unwrap();
        step(&mut world);
        let (_, media) = world
            .publish(Actor::Person(teacher), group, &[vec![child]])
            .unwrap();
        step(&mut world);
        let t_posted = world.now;
        step(&mut world);
        world.decide_consent(g2, child, Group, false).unwrap();
        step(&mut world);
        let t_withdrawn = world.now;
        step(&mut world);
        world
            .decide_consent(g1, child, PublicCommunication, true)
            .unwrap();
        step(&mut world);
        // The teacher writes to A's guardians; the first replies.
        let conversation_id = ConversationId::from_uuid(world.next_uuid());
        let message_id = MessageId::from_uuid(world.next_uuid());
        world
            .conversation(
                Actor::Person(teacher),
                conversation_id,
                ConversationAction::Start {
                    conversation_id,
                    child_id: child,
                    participants: Vec::new(),
                    message_id,
                    body: TEACHER_MESSAGE.into(),
                },
            )
            .unwrap();
        let message_id = MessageId::from_uuid(world.next_uuid());
        world
            .conversation(
                Actor::Person(g1),
                conversation_id,
                ConversationAction::Post {
                    message_id,
                    body: GUARDIAN_REPLY.into(),
                },
            )
            .unwrap();
        step(&mut world);
        Self {
            world,
            group,
            teacher,
            child,
            guardians,
            other_parents,
            media: media[0],
            t_before,
            t_one_grant,
            t_posted,
            t_withdrawn,
            decisions: vec![
                (g1, SchoolCommunication, true, true),
                (g1, Group, true, true),
                (g2, Group, true, true),
                (g2, Group, false, false),
                (g1, PublicCommunication, true, true),
            ],
        }
    }
}

/// An RFC 3339 argument.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
