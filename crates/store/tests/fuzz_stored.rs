//! Hostile bytes in what the store and the key vault read back: a stored event's row changed
//! in one column by someone with database access (on the real SQLite file and on PostgreSQL),
//! sealed fields whose envelope was altered (nonce, ciphertext, key id, subject), and a vault
//! whose stored keys or check value were damaged.
//!
//! Nothing may panic; every refusal is a typed error; a row changed in any column the hash
//! chains cover is refused on read or named by `verify`; an envelope opens only to the value
//! sealed in it. Longer runs: `PROPTEST_CASES=100000 cargo test -p kring-store --test
//! fuzz_stored` (PostgreSQL at `DATABASE_URL`, as for every test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kring_domain::access::Subject;
use kring_domain::sealed::{Envelope, Sealed};
use kring_domain::simulation::hostile::{fuzz_config, mutated_bytes, mutated_text};
use kring_domain::{ChildId, PersonId};
use kring_store::conformance::{event, stream};
use kring_store::postgres::PostgresStore;
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey, VaultError};
use kring_store::{EventStore, EventStoreExt, ExpectedVersion, RecordedEvent, StoreError};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::OnceLock;
use uuid::Uuid;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// Stored rows changed in one column.

/// A value written into a stored row's column.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Id(Uuid),
    /// PostgreSQL: a `timestamptz` literal (`infinity`, years beyond what chrono holds).
    Time(&'static str),
}

/// The columns of `events` a row can be changed in; all but `recorded_at` are covered by the
/// stream chain or the global chain.
const COLUMNS: &[&str] = &[
    "event_id",
    "stream",
    "version",
    "event_type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "actor",
    "correlation_id",
    "causation_id",
    "payload",
    "hash",
    "log_hash",
];

fn text_like(original: &'static str) -> impl Strategy<Value = Cell> {
    prop_oneof![
        mutated_text(original).prop_map(|t| Cell::Text(t.replace('\0', ""))),
        prop::sample::select(vec![
            "",
            "system",
            "operator",
            "person:",
            "person:not-a-uuid",
            "child-0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
            "post-0190F5A1-B2C3-7D4E-8F90-A1B2C3D4E5F6",
            "{\"n\":1}\u{1e}x\u{1f}y",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}",
        ])
        .prop_map(|t| Cell::Text(t.to_owned())),
    ]
}

fn int_like() -> impl Strategy<Value = Cell> {
    prop_oneof![
        prop::sample::select(vec![
            i64::MIN,
            i64::MAX,
            -1,
            0,
            1,
            65_535,
            65_536,
            i64::from(i32::MAX) + 1,
            8_210_298_412_799_999_999,
            -8_334_632_851_200_000_001,
        ])
        .prop_map(Cell::Int),
        any::<i64>().prop_map(Cell::Int),
    ]
}

fn bytes_like() -> impl Strategy<Value = Cell> {
    prop_oneof![
        mutated_bytes(vec![0xAB; 32]).prop_map(Cell::Bytes),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(Cell::Bytes),
        any::<u128>().prop_map(|n| Cell::Id(Uuid::from_u128(n))),
    ]
}

/// A hostile value for `column` on SQLite, which stores any type in any column.
fn sqlite_cell(column: &'static str) -> BoxedStrategy<Cell> {
    let typed = match column {
        "stream" => text_like("child-0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6").boxed(),
        "event_type" => text_like("TestHappened").boxed(),
        "actor" => text_like("person:0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6").boxed(),
        "payload" => text_like("{\"n\":1}").boxed(),
        "version" | "schema_version" | "occurred_at" | "recorded_at" => int_like().boxed(),
        _ => bytes_like().boxed(),
    };
    prop_oneof![
        6 => typed,
        1 => Just(Cell::Null),
        1 => prop::sample::select(vec![0.5, -0.0, 1e300, f64::NAN]).prop_map(Cell::Real),
        1 => int_like(),
        1 => text_like("x"),
        1 => bytes_like(),
    ]
    .boxed()
}

/// A hostile value for `column` of its PostgreSQL type.
fn postgres_cell(column: &'static str) -> BoxedStrategy<Cell> {
    match column {
        "stream" => text_like("child-0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6").boxed(),
        "event_type" => text_like("TestHappened").boxed(),
        "actor" => text_like("person:0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6").boxed(),
        "payload" => text_like("{\"n\":1}").boxed(),
        "version" | "schema_version" => int_like().boxed(),
        "occurred_at" | "recorded_at" => prop::sample::select(vec![
            "infinity",
            "-infinity",
            "294276-12-31 23:59:59.999999+00",
            "4713-01-01 00:00:00+00 BC",
            "262143-12-31 23:59:59+00",
            "1970-01-01 00:00:00+00",
        ])
        .prop_map(Cell::Time)
        .boxed(),
        "event_id" | "correlation_id" => any::<u128>()
            .prop_map(|n| Cell::Id(Uuid::from_u128(n)))
            .boxed(),
        "causation_id" => prop_oneof![
            Just(Cell::Null),
            any::<u128>().prop_map(|n| Cell::Id(Uuid::from_u128(n)))
        ]
        .boxed(),
        _ => prop_oneof![
            mutated_bytes(vec![0xAB; 32]).prop_map(Cell::Bytes),
            Just(Cell::Null)
        ]
        .boxed(),
    }
}

enum Backend {
    Sqlite {
        store: SqliteStore,
        admin: sqlx::SqlitePool,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: PostgresStore,
        admin: sqlx::PgPool,
        _db: kring_testkit::PgTestDatabase,
    },
}

/// A log of four streams of five events each; a copy of its rows is kept in `pristine`, from
/// which every case restores the row it changed.
async fn fill<S: EventStore>(store: &S) -> Vec<kring_domain::StreamName> {
    let mut streams = Vec::new();
    for _ in 0..4 {
        let s = stream();
        store
            .append(&s, ExpectedVersion::NoStream, (0..5).map(event).collect())
            .await
            .unwrap();
        streams.push(s);
    }
    streams
}

impl Backend {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db"))
            .await
            .unwrap();
        fill(&store).await;
        let url = format!("sqlite://{}", store.path().display());
        let admin = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE pristine AS SELECT * FROM events")
            .execute(&admin)
            .await
            .unwrap();
        Self::Sqlite {
            store,
            admin,
            _dir: dir,
        }
    }

    async fn postgres() -> Self {
        let db = kring_testkit::fresh_postgres_database("fuzz_stored").await;
        let store = PostgresStore::connect(db.url()).await.unwrap();
        fill(&store).await;
        let admin = sqlx::PgPool::connect(db.url()).await.unwrap();
        sqlx::query("CREATE TABLE pristine AS SELECT * FROM events")
            .execute(&admin)
            .await
            .unwrap();
        Self::Postgres {
            store,
            admin,
            _db: db,
        }
    }

    /// Changes `column` of the row at `position`; whether the row changed (a value the
    /// database refuses, e.g. by a constraint, changes nothing).
    async fn corrupt(&self, position: i64, column: &str, cell: &Cell) -> bool {
        macro_rules! run {
            ($pool:expr, $cast:expr) => {{
                let sql = format!(
                    "UPDATE events SET {column} = $1{} WHERE position = $2 AND {column} IS DISTINCT FROM $1{}",
                    $cast, $cast
                );
                let q = sqlx::query(&sql);
                let q = match cell {
                    Cell::Null => q.bind(None::<i64>),
                    Cell::Int(v) => q.bind(*v),
                    Cell::Real(v) => q.bind(*v),
                    Cell::Text(v) => q.bind(v.clone()),
                    Cell::Bytes(v) => q.bind(v.clone()),
                    Cell::Id(v) => q.bind(*v),
                    Cell::Time(v) => q.bind(*v),
                };
                q.bind(position)
                    .execute($pool)
                    .await
                    .map_or(false, |r| r.rows_affected() == 1)
            }};
        }
        match self {
            Self::Sqlite { admin, .. } => {
                let changed = run!(admin, "");
                changed
            }
            Self::Postgres { admin, .. } => {
                let cast = match (column, cell) {
                    (_, Cell::Time(_)) => "::timestamptz",
                    ("schema_version", Cell::Int(_)) => "::bigint",
                    ("causation_id", Cell::Null) => "::uuid",
                    ("log_hash", Cell::Null) => "::bytea",
                    _ => "",
                };
                let changed = run!(admin, cast);
                changed
            }
        }
    }

    /// Puts every row back as it was (also after a case that failed half-way).
    async fn restore(&self) {
        let sql = [
            "DELETE FROM events",
            "INSERT INTO events SELECT * FROM pristine",
        ];
        for statement in sql {
            match self {
                Self::Sqlite { admin, .. } => {
                    sqlx::query(statement).execute(admin).await.unwrap();
                }
                Self::Postgres { admin, .. } => {
                    sqlx::query(statement).execute(admin).await.unwrap();
                }
            }
        }
    }

    /// Every read the store offers, and `verify`: the log as read, if everything read back
    /// and verified clean. Decodes each payload read too.
    async fn reads_clean(&self) -> Option<Vec<RecordedEvent>> {
        match self {
            Self::Sqlite { store, .. } => reads_clean(store).await,
            Self::Postgres { store, .. } => reads_clean(store).await,
        }
    }
}

fn typed(e: &StoreError) {
    // Every refusal has a message; its Display must not panic either.
    assert!(!e.to_string().is_empty());
}

async fn reads_clean<S: EventStore + Clone>(store: &S) -> Option<Vec<RecordedEvent>> {
    let mut clean = true;
    let mut log = Vec::new();
    match store.read_all(0, 1_000).await {
        Ok(events) => {
            for e in &events {
                let _ = e.decode();
                if let Err(err) = store.read_stream(&e.stream, 0, 1_000).await {
                    typed(&err);
                    clean = false;
                }
                if let Err(err) = store.locate(e.event_id).await {
                    typed(&err);
                    clean = false;
                }
            }
            // The same log read in pages of three.
            let mut paged = Vec::new();
            let mut after = 0;
            loop {
                match store.read_all(after, 3).await {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => {
                        after = batch.last().map_or(after, |e| e.position);
                        paged.extend(batch);
                    }
                    Err(err) => {
                        typed(&err);
                        clean = false;
                        break;
                    }
                }
            }
            if clean {
                assert_eq!(
                    paged, events,
                    "paged reads give the log a single read gives"
                );
            }
            log = events;
        }
        Err(err) => {
            typed(&err);
            clean = false;
        }
    }
    match store.verify().await {
        Ok(report) => (clean && report.ok).then_some(log),
        Err(err) => {
            typed(&err);
            None
        }
    }
}

/// A row changed in one column, read back through every read and `verify`: nothing panics,
/// every refusal is typed, and a log that reads back differently from what was written (in
/// anything but `recorded_at`, which no hash covers) is refused or fails `verify`. A change
/// that reads back the same (an empty blob for no causation id on SQLite) need not be noticed.
fn stored_rows(backend: &Backend, cases: u32) {
    let rt = runtime();
    let original = rt
        .block_on(backend.reads_clean())
        .expect("the log verifies before anything is changed");
    let strategy = (1..=20_i64, prop::sample::select(COLUMNS)).prop_flat_map(|(p, c)| {
        let cell = match backend {
            Backend::Sqlite { .. } => sqlite_cell(c),
            Backend::Postgres { .. } => postgres_cell(c),
        };
        (Just(p), Just(c), cell)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..fuzz_config(cases)
    });
    let changed_rows = std::cell::Cell::new(0_u32);
    runner
        .run(&strategy, |(position, column, cell)| {
            rt.block_on(async {
                backend.restore().await;
                if backend.corrupt(position, column, &cell).await {
                    changed_rows.set(changed_rows.get() + 1);
                    if let Some(read) = backend.reads_clean().await {
                        // The recording time is the store's, outside every hash.
                        let mut same_time = original.clone();
                        for (s, r) in same_time.iter_mut().zip(&read) {
                            s.recorded_at = r.recorded_at;
                        }
                        prop_assert_eq!(
                            &read,
                            &same_time,
                            "{} of position {} set to {:?} reads back changed, unnoticed",
                            column,
                            position,
                            cell
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(backend.restore());
    assert_eq!(rt.block_on(backend.reads_clean()), Some(original));
    assert!(changed_rows.get() > 0, "some cases changed a row");
}

#[test]
fn a_stored_row_changed_in_any_column_reads_as_a_typed_error_or_fails_verify_on_sqlite() {
    let backend = runtime().block_on(Backend::sqlite());
    stored_rows(&backend, 160);
}

#[test]
fn a_stored_row_changed_in_any_column_reads_as_a_typed_error_or_fails_verify_on_postgres() {
    let backend = runtime().block_on(Backend::postgres());
    stored_rows(&backend, 96);
}

// ---------------------------------------------------------------------------------------------
// Sealed fields with an altered envelope.

struct Vault {
    vault: KeyVault,
    sealed: Envelope,
    plaintext: Vec<u8>,
    other_subject: Subject,
    _dir: tempfile::TempDir,
}

fn vault() -> &'static Vault {
    static VAULT: OnceLock<Vault> = OnceLock::new();
    VAULT.get_or_init(|| {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let vault = KeyVault::open_sqlite(&dir.path().join("vault.db"), &MasterKey::generate())
                .await
                .unwrap();
            let plaintext = serde_json::to_vec("Sanne de Vries").unwrap();
            let subject = Subject::Child(ChildId::generate());
            let sealed = vault.encrypt(subject, &plaintext).await.unwrap();
            // Another subject with a key of its own.
            let other_subject = Subject::Person(PersonId::generate());
            vault.encrypt(other_subject, b"\"x\"").await.unwrap();
            Vault {
                vault,
                sealed,
                plaintext,
                other_subject,
                _dir: dir,
            }
        })
    })
}

#[derive(Debug, Clone)]
enum EnvelopeEdit {
    Nonce(String),
    Ciphertext(String),
    KeyId(Uuid),
    Subject(u8),
}

fn envelope_edit() -> impl Strategy<Value = EnvelopeEdit> {
    let v = vault();
    prop_oneof![
        3 => prop_oneof![
            mutated_text(&v.sealed.nonce),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| B64.encode(b)),
        ]
        .prop_map(EnvelopeEdit::Nonce),
        3 => mutated_text(&v.sealed.ciphertext).prop_map(EnvelopeEdit::Ciphertext),
        1 => any::<u128>().prop_map(|n| EnvelopeEdit::KeyId(Uuid::from_u128(n))),
        1 => (0..3_u8).prop_map(EnvelopeEdit::Subject),
    ]
}

proptest! {
    #![proptest_config(fuzz_config(256))]

    #[test]
    fn an_altered_envelope_opens_to_its_value_or_to_a_typed_refusal(
        edits in prop::collection::vec(envelope_edit(), 1..3)
    ) {
        let v = vault();
        let mut envelope = v.sealed.clone();
        for edit in &edits {
            match edit {
                EnvelopeEdit::Nonce(n) => envelope.nonce.clone_from(n),
                EnvelopeEdit::Ciphertext(c) => envelope.ciphertext.clone_from(c),
                EnvelopeEdit::KeyId(k) => envelope.key_id = *k,
                EnvelopeEdit::Subject(0) => envelope.subject = v.other_subject,
                EnvelopeEdit::Subject(1) => envelope.subject = Subject::Child(ChildId::generate()),
                EnvelopeEdit::Subject(_) => envelope.subject = Subject::Media(kring_domain::MediaId::generate()),
            }
        }
        let opened = runtime().block_on(v.vault.decrypt(&envelope));
        match opened {
            Ok(Some(plain)) => prop_assert_eq!(&plain, &v.plaintext),
            // A subject without a key reads as erased.
            Ok(None) => prop_assert!(envelope.subject != v.sealed.subject && envelope.subject != v.other_subject),
            Err(VaultError::Undecryptable { subject }) => prop_assert_eq!(subject, envelope.subject),
            Err(e) => prop_assert!(false, "an untyped refusal: {e}"),
        }
        let field: Sealed<String> = Sealed::Envelope(envelope);
        match runtime().block_on(v.vault.open(&field)) {
            Ok(opened) => prop_assert!(opened.value().is_none_or(|s| s == "Sanne de Vries")),
            Err(VaultError::Undecryptable { .. }) => {}
            Err(e) => prop_assert!(false, "an untyped refusal: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A vault whose stored keys were damaged.

#[derive(Debug, Clone)]
enum VaultDamage {
    WrappedKey(Vec<u8>),
    KeyId(Vec<u8>),
    MasterCheck(Vec<u8>),
}

fn damaged_vault_opens_or_refuses(damage: &VaultDamage) -> Result<(), TestCaseError> {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let master = MasterKey::generate();
        let subject = Subject::Child(ChildId::generate());
        let envelope = {
            let vault = KeyVault::open_sqlite(&path, &master).await.unwrap();
            vault.encrypt(subject, b"\"Sanne\"").await.unwrap()
        };
        let admin = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let (sql, value) = match damage {
            VaultDamage::WrappedKey(b) => ("UPDATE subject_keys SET wrapped_key = $1", b),
            VaultDamage::KeyId(b) => ("UPDATE subject_keys SET key_id = $1", b),
            VaultDamage::MasterCheck(b) => (
                "UPDATE vault_meta SET value = $1 WHERE name = 'master_check'",
                b,
            ),
        };
        sqlx::query(sql)
            .bind(value.clone())
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        // A process opening the damaged vault, its cache cold.
        match KeyVault::open_sqlite(&path, &master).await {
            Ok(vault) => match vault.decrypt(&envelope).await {
                Ok(Some(plain)) => prop_assert_eq!(plain, b"\"Sanne\"".to_vec()),
                Ok(None) => prop_assert!(false, "a damaged key read as erased"),
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        VaultError::WrongMasterKey
                            | VaultError::Undecryptable { .. }
                            | VaultError::Database(_)
                    ),
                    "{e}"
                ),
            },
            Err(e) => prop_assert!(
                matches!(e, VaultError::WrongMasterKey | VaultError::Database(_)),
                "{e}"
            ),
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(fuzz_config(48))]

    #[test]
    fn a_vault_with_damaged_keys_opens_to_the_value_or_to_a_typed_refusal(
        damage in prop_oneof![
            mutated_bytes(vec![0x5A; 24 + 32 + 16]).prop_map(VaultDamage::WrappedKey),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(VaultDamage::WrappedKey),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(VaultDamage::KeyId),
            prop::collection::vec(any::<u8>(), 0..60).prop_map(VaultDamage::MasterCheck),
        ]
    ) {
        damaged_vault_opens_or_refuses(&damage)?;
    }
}

/// Stored keys and check values shorter than a nonce were split at 24 bytes and passed to
/// `XNonce::from_slice`, which panics on a slice of any other length.
#[test]
fn keys_and_check_values_shorter_than_a_nonce_are_refused_not_a_panic() {
    for damage in [
        VaultDamage::WrappedKey(Vec::new()),
        VaultDamage::WrappedKey(vec![1; 23]),
        VaultDamage::MasterCheck(Vec::new()),
        VaultDamage::MasterCheck(vec![1; 10]),
    ] {
        damaged_vault_opens_or_refuses(&damage).unwrap();
    }
}

/// sqlx's chrono decoding panicked on a `timestamptz` beyond chrono's range; such a row is now
/// refused as corrupt, naming its position.
#[test]
fn a_postgres_row_with_a_time_beyond_range_is_corrupt_not_a_panic() {
    let backend = runtime().block_on(Backend::postgres());
    for time in ["infinity", "-infinity", "294276-12-31 23:59:59+00"] {
        runtime().block_on(async {
            backend.restore().await;
            assert!(backend.corrupt(3, "occurred_at", &Cell::Time(time)).await);
            let Backend::Postgres { store, .. } = &backend else {
                unreachable!()
            };
            match store.read_all(0, 100).await {
                Err(StoreError::Corrupt { position, reason }) => {
                    assert_eq!(position, 3, "{reason}");
                }
                other => panic!("{time}: {other:?}"),
            }
        });
    }
}
