//! The replay subcommands against a real installation, on SQLite and PostgreSQL: the real
//! binary, a real data directory or database, a simulated school written through the vault.

#![allow(clippy::unwrap_used)]

mod common;

use common::{rfc3339, Backend, Installation, Story};
use kring_domain::access::Subject;
use kring_domain::{PersonId, StreamName};
use kring_store::EventStoreExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::BufRead;

async fn installation(backend: Backend) -> (Installation, Story) {
    let story = Story::play();
    let mut inst = Installation::new(backend).await;
    inst.sync(&story.world).await;
    (inst, story)
}

fn people(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["person_id"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(people: &[PersonId]) -> BTreeSet<String> {
    people.iter().map(ToString::to_string).collect()
}

async fn consent_history_lists_every_decision_in_log_order(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let child = story.child.to_string();
    let out = inst
        .run(&["consent-history", "--child", &child, "--format", "json"])
        .ok()
        .json();
    assert_eq!(out["child_id"], child.as_str());
    let entries = out["entries"].as_array().unwrap();
    let got: Vec<(String, String, bool, bool)> = entries
        .iter()
        .map(|e| {
            (
                e["guardian_id"].as_str().unwrap().to_owned(),
                e["purpose"].as_str().unwrap().to_owned(),
                e["granted"].as_bool().unwrap(),
                e["effective_after"].as_bool().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, bool, bool)> = story
        .decisions
        .iter()
        .map(|(g, p, granted, eff)| (g.to_string(), p.to_string(), *granted, *eff))
        .collect();
    assert_eq!(got, want);

    // Event ids, positions and times are the log's own.
    let recorded = inst
        .system
        .store
        .read_stream_to_end(&StreamName::child(story.child))
        .await
        .unwrap();
    assert_eq!(recorded.len(), entries.len());
    for (e, r) in entries.iter().zip(&recorded) {
        assert_eq!(e["event_id"], r.event_id.to_string().as_str());
        assert_eq!(e["position"], r.position);
        assert_eq!(e["occurred_at"], rfc3339(r.occurred_at).as_str());
        assert_eq!(e["policy_version"], 1);
        assert_eq!(e["method"], "app");
    }

    // One purpose, one period: only the matching decisions.
    let filtered = inst
        .run(&[
            "--format",
            "json",
            "consent-history",
            "--child",
            &child,
            "--purpose",
            "group_communication",
            "--from",
            &rfc3339(story.t_one_grant),
        ])
        .ok()
        .json();
    let granted: Vec<bool> = filtered["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["granted"].as_bool().unwrap())
        .collect();
    assert_eq!(
        granted,
        vec![true, false],
        "g2's grant, then g2's withdrawal"
    );

    // The same answer as a table and as CSV.
    let table = inst
        .run(&["consent-history", "--child", &child, "--format", "table"])
        .ok();
    assert!(table.stdout.contains("5 decision(s)"), "{}", table.stdout);
    assert!(table.stdout.contains("withdrawn"));
    let csv = inst
        .run(&["--format", "csv", "consent-history", "--child", &child])
        .ok();
    assert_eq!(csv.stdout.lines().count(), 1 + 5);
    assert!(csv
        .stdout
        .starts_with("occurred_at,purpose,decision,guardian_id,"));
}

async fn consent_as_of_three_moments_gives_three_answers(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let child = story.child.to_string();
    let [g1, g2] = story.guardians;
    let at = |t| {
        inst.run(&[
            "consent-as-of",
            "--child",
            &child,
            "--at",
            &rfc3339(t),
            "--format",
            "json",
        ])
        .ok()
        .json()
    };
    let group = |answer: &Value| {
        let p = answer["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["purpose"] == "group_communication")
            .unwrap()
            .clone();
        let decisions: Vec<(String, bool)> = p["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["guardian_id"].as_str().unwrap().to_owned(),
                    d["granted"].as_bool().unwrap(),
                )
            })
            .collect();
        (p["effective"].as_bool().unwrap(), decisions)
    };
    let before = at(story.t_before);
    let one = at(story.t_one_grant);
    let withdrawn = at(story.t_withdrawn);
    assert_eq!(before["as_of"], rfc3339(story.t_before).as_str());
    assert_eq!(
        group(&before),
        (false, vec![]),
        "nobody had decided: opt-in means no"
    );
    assert_eq!(group(&one), (true, vec![(g1.to_string(), true)]));
    let mut both = vec![(g1.to_string(), true), (g2.to_string(), false)];
    both.sort();
    assert_eq!(group(&withdrawn), (false, both), "one withdrawal ends it");
    assert_ne!(before, one);
    assert_ne!(one, withdrawn);
    assert_eq!(
        before["purposes"].as_array().unwrap().len(),
        7,
        "every purpose is answered"
    );
}

async fn who_may_see_changes_exactly_for_classmates_parents_after_a_withdrawal(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let media = story.media.to_string();
    let ask = |t: Option<String>| {
        let mut args = vec!["who-may-see", "--media", &media, "--format", "json"];
        if let Some(t) = &t {
            args.extend(["--at", t.as_str()]);
        }
        inst.run(&args).ok().json()
    };
    let before = ask(Some(rfc3339(story.t_posted)));
    let after = ask(Some(rfc3339(story.t_withdrawn)));
    let now = ask(None);

    // The API's shape, exactly.
    let keys: BTreeSet<&str> = before
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["media_id", "at", "viewers", "withheld"])
    );
    assert_eq!(before["media_id"], media.as_str());
    assert_eq!(before["at"], rfc3339(story.t_posted).as_str());

    let own = ids(&story.guardians);
    let others = ids(&story.other_parents);
    let staff = ids(&[story.world.director, story.teacher]);
    let reasons = |answer: &Value, reason: &str| -> BTreeSet<String> {
        answer["viewers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["reason"] == reason)
            .map(|v| v["person_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(reasons(&before, "staff"), staff);
    assert_eq!(reasons(&before, "own_child"), own);
    assert_eq!(reasons(&before, "audience"), others);
    assert!(before["withheld"].as_array().unwrap().is_empty());

    // The withdrawal moves exactly the classmates' parents from viewers to withheld.
    let lost: BTreeSet<String> = people(&before["viewers"])
        .difference(&people(&after["viewers"]))
        .cloned()
        .collect();
    assert_eq!(lost, others);
    assert_eq!(
        reasons(&after, "own_child"),
        own,
        "A's own guardians still see A"
    );
    assert_eq!(reasons(&after, "staff"), staff);
    assert_eq!(people(&after["withheld"]), others);
    for w in after["withheld"].as_array().unwrap() {
        assert_eq!(
            w["because"],
            json!([{"child_id": story.child.to_string(), "purpose": "group_communication"}])
        );
    }
    assert_eq!(now["viewers"], after["viewers"]);
    assert_eq!(now["withheld"], after["withheld"]);

    // Before the photo was posted it did not exist.
    let early = inst.run(&[
        "who-may-see",
        "--media",
        &media,
        "--at",
        &rfc3339(story.t_before),
    ]);
    assert_eq!(early.code, 3, "{}", early.stderr);
    assert!(
        early.stderr.contains("not published yet"),
        "{}",
        early.stderr
    );
}

async fn export_opens_the_subjects_own_fields_and_shows_erased_ones(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let child = story.child.to_string();
    let out = inst.run(&["export", "--child", &child]).ok().json();
    assert_eq!(out["subject"], json!({"kind": "child", "id": child}));
    let events = out["events"].as_array().unwrap();
    let enrolled = events
        .iter()
        .find(|e| e["event_type"] == "ChildEnrolled")
        .unwrap();
    assert_eq!(enrolled["payload"]["first_name"], "Kind1");
    assert_eq!(enrolled["payload"]["last_initial"], "V");
    let decisions = events
        .iter()
        .filter(|e| e["event_type"] == "ConsentDecided")
        .count();
    assert_eq!(decisions, story.decisions.len());
    assert!(
        events.iter().any(|e| e["event_type"] == "PostPublished"),
        "the photo tags A"
    );
    assert!(
        !out.to_string().contains("$sealed"),
        "every sealed field is opened, erased or withheld"
    );
    assert_eq!(out["erased_fields"], 0);

    // A guardian's export opens their own name and address, and nobody else's.
    let g1 = story.guardians[0].to_string();
    let person = inst.run(&["export", "--person", &g1]).ok().json();
    let text = person.to_string();
    assert!(text.contains("Ouder"), "their display name");
    assert!(text.contains("@mail.example"), "their e-mail address");
    assert!(text.contains(common::GUARDIAN_REPLY), "their own message");
    assert!(
        !text.contains(common::TEACHER_MESSAGE),
        "the teacher's message is the teacher's data: withheld"
    );
    assert!(text.contains(kring_replay_tool::export::WITHHELD));
    assert!(person["withheld_fields"].as_u64().unwrap() > 0);
    assert!(!person.to_string().contains("$sealed"));

    // After erasure the child's fields read [erased]; the facts stay.
    inst.system
        .vault
        .erase(Subject::Child(story.child))
        .await
        .unwrap();
    let erased = inst.run(&["export", "--child", &child]).ok().json();
    let enrolled = erased["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "ChildEnrolled")
        .unwrap()
        .clone();
    assert_eq!(enrolled["payload"]["first_name"], "[erased]");
    assert!(erased["erased_fields"].as_u64().unwrap() >= 2);
    assert!(!erased.to_string().contains("Kind1"));
}

/// A removal's reason is the remover's personal data: `export` opens it for them (also one
/// written in plain text before reasons were sealed, upcast), `events` opens it, a `rebuild`
/// reads both, and once the remover is erased every output shows `[erased]`.
async fn removal_reasons_old_and_new_are_shown_to_their_remover_and_erased_with_them(
    backend: Backend,
) {
    use kring_domain::post::PostAction;
    use kring_domain::Actor;
    const NEW: &str = "Sam's ouders vroegen het";
    const OLD: &str = "Op verzoek van Sams moeder";
    let (mut inst, mut story) = installation(backend).await;
    let teacher = Actor::Person(story.teacher);
    let (post, _) = story.world.media_ids[0];
    story
        .world
        .post(
            teacher,
            post,
            PostAction::RemoveMedia {
                media_id: story.media,
                reason: NEW.into(),
            },
        )
        .unwrap();
    let (old_post, _) = story
        .world
        .publish(teacher, story.group, &[vec![]])
        .unwrap();
    inst.sync(&story.world).await;
    // As a build of schema version 1 wrote it.
    let v1 = json!({"post_id": old_post, "reason": OLD,
        "by": {"kind": "person", "person_id": story.teacher}});
    inst.system
        .store
        .append(
            &StreamName::post(old_post),
            kring_store::ExpectedVersion::Any,
            vec![kring_store::NewEvent::new(
                "PostRemoved",
                1,
                &v1,
                kring_store::Metadata::new(story.world.now, teacher),
            )],
        )
        .await
        .unwrap();
    inst.run(&["rebuild"]).ok();

    let teacher_id = story.teacher.to_string();
    let reasons = |export: &Value| -> Vec<(Value, Value)> {
        export["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(
                    e["event_type"].as_str(),
                    Some("PostRemoved" | "MediaRemoved")
                )
            })
            .map(|e| (e["schema_version"].clone(), e["payload"]["reason"].clone()))
            .collect()
    };
    let export = inst.run(&["export", "--person", &teacher_id]).ok().json();
    assert_eq!(
        reasons(&export),
        vec![
            (json!(2), json!({"kind": "given", "text": NEW})),
            (json!(2), json!({"kind": "given", "text": OLD})),
        ]
    );
    let old_stream = StreamName::post(old_post).to_string();
    let events = inst
        .run(&["events", "--stream", &old_stream, "--format", "json"])
        .ok();
    assert!(events.stdout.contains(OLD), "{}", events.stdout);
    // A guardian's export holds no one's removal reason.
    let g1 = story.guardians[0].to_string();
    let guardian = inst.run(&["export", "--person", &g1]).ok();
    assert!(!guardian.stdout.contains(NEW) && !guardian.stdout.contains(OLD));

    inst.system
        .vault
        .erase(Subject::Person(story.teacher))
        .await
        .unwrap();
    let erased = json!({"kind": "given", "text": "[erased]"});
    let export = inst.run(&["export", "--person", &teacher_id]).ok().json();
    assert_eq!(
        reasons(&export),
        vec![(json!(2), erased.clone()), (json!(2), erased)]
    );
    for stream in [StreamName::post(post).to_string(), old_stream] {
        let out = inst
            .run(&["events", "--stream", &stream, "--format", "json"])
            .ok();
        assert!(
            !out.stdout.contains(NEW) && !out.stdout.contains(OLD),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("[erased]"));
    }
}

async fn events_prints_a_stream_and_follows_new_events(backend: Backend) {
    let (mut inst, mut story) = installation(backend).await;
    let stream = StreamName::child(story.child).to_string();
    let all = inst
        .run(&["events", "--stream", &stream, "--format", "json"])
        .ok();
    let lines: Vec<Value> = all
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), story.decisions.len());
    assert!(lines.iter().all(|l| l["stream"] == stream.as_str()));
    assert_eq!(lines[3]["payload"]["granted"], false);

    let from = lines[2]["position"].as_u64().unwrap().to_string();
    let some = inst
        .run(&[
            "events", "--stream", &stream, "--from", &from, "--limit", "2", "--format", "csv",
        ])
        .ok();
    assert_eq!(some.stdout.lines().count(), 1 + 2);
    assert!(some
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .starts_with(&format!("{from},")));

    // The whole log, opened: the first enrolment shows the child's name.
    let log = inst
        .run(&["events", "--limit", "50", "--format", "json"])
        .ok();
    assert_eq!(log.stdout.lines().count(), 50);
    assert!(log.stdout.contains("\"first_name\":\"Kind1\""));
    let sealed = inst
        .run(&["events", "--limit", "50", "--sealed", "--format", "json"])
        .ok();
    assert!(!sealed.stdout.contains("Kind1"));

    // --follow prints an event committed after it started.
    let next = (kring_store::EventStore::head(&inst.system.store)
        .await
        .unwrap()
        + 1)
    .to_string();
    let mut cmd = inst.command();
    cmd.arg("--data-dir")
        .arg(&inst.data_dir)
        .args([
            "events", "--follow", "--stream", &stream, "--from", &next, "--format", "json",
        ])
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let [g1, _] = story.guardians;
    story
        .world
        .decide_consent(
            g1,
            story.child,
            kring_domain::Purpose::InternalResearch,
            true,
        )
        .unwrap();
    inst.write(&story.world).await;
    // A safety net against a hang, not a timing assertion.
    let line = rx.recv_timeout(std::time::Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
    assert_eq!(event["payload"]["purpose"], "internal_research");
    assert_eq!(event["stream"], stream.as_str());
}

async fn bad_arguments_give_one_line_on_stderr_and_the_documented_exit_code(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let child = story.child.to_string();
    let unknown = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["consent-history".into(), "--child".into(), unknown.clone()],
            3,
            "no child",
        ),
        (
            vec![
                "consent-as-of".into(),
                "--child".into(),
                unknown.clone(),
                "--at".into(),
                "2026-09-01T00:00:00Z".into(),
            ],
            3,
            "no child",
        ),
        (
            vec!["who-may-see".into(), "--media".into(), unknown.clone()],
            3,
            "no media item",
        ),
        (
            vec!["export".into(), "--person".into(), unknown.clone()],
            3,
            "nothing in this log",
        ),
        (
            vec![
                "events".into(),
                "--stream".into(),
                format!("child-{unknown}"),
            ],
            3,
            "no events",
        ),
        (
            vec![
                "consent-as-of".into(),
                "--child".into(),
                child.clone(),
                "--at".into(),
                "2026-13-01T00:00:00Z".into(),
            ],
            2,
            "RFC 3339",
        ),
        (
            vec![
                "consent-history".into(),
                "--child".into(),
                child.clone(),
                "--from".into(),
                "yesterday".into(),
            ],
            2,
            "RFC 3339",
        ),
        (
            vec![
                "consent-history".into(),
                "--child".into(),
                "not-a-uuid".into(),
            ],
            2,
            "malformed id",
        ),
        (
            vec![
                "consent-history".into(),
                "--child".into(),
                child.clone(),
                "--purpose".into(),
                "marketing".into(),
            ],
            2,
            "unknown consent purpose",
        ),
        (
            vec!["events".into(), "--stream".into(), "kid-1".into()],
            2,
            "malformed stream name",
        ),
        (
            vec!["events".into(), "--from".into(), "0".into()],
            2,
            "malformed position",
        ),
        (
            vec!["rebuild".into(), "--projection".into(), "nope".into()],
            2,
            "unknown projection",
        ),
        (vec!["export".into()], 2, "required"),
        (
            vec![
                "export".into(),
                "--person".into(),
                unknown.clone(),
                "--child".into(),
                child.clone(),
            ],
            2,
            "cannot be used with",
        ),
        (vec!["frobnicate".into()], 2, "unrecognized subcommand"),
        (
            vec![
                "consent-history".into(),
                "--child".into(),
                child.clone(),
                "--from".into(),
                rfc3339(story.t_withdrawn),
                "--to".into(),
                rfc3339(story.t_before),
            ],
            2,
            "is not before",
        ),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = inst.run(&args);
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{args:?}: one line, got {:?}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("replay-tool: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(says),
            "{args:?}: {:?} should say {says:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }

    // Another installation's master key opens nothing.
    let mut cmd = inst.command();
    cmd.env(
        kring_store::vault::MASTER_KEY_ENV,
        kring_store::vault::MasterKey::generate().to_base64(),
    );
    cmd.arg("--data-dir")
        .arg(&inst.data_dir)
        .args(["consent-history", "--child", &child]);
    let out = common::run(cmd);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr.contains("master key does not match"),
        "{}",
        out.stderr
    );
}

kring_testkit::on_both_backends!(sqlite: |_| async { common::Backend::Sqlite }, postgres: |_| async { common::Backend::Postgres };
    consent_history_lists_every_decision_in_log_order,
    consent_as_of_three_moments_gives_three_answers,
    who_may_see_changes_exactly_for_classmates_parents_after_a_withdrawal,
    export_opens_the_subjects_own_fields_and_shows_erased_ones,
    events_prints_a_stream_and_follows_new_events,
    removal_reasons_old_and_new_are_shown_to_their_remover_and_erased_with_them,
    bad_arguments_give_one_line_on_stderr_and_the_documented_exit_code,
);

#[test]
fn a_missing_data_directory_is_one_line_and_exit_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replay-tool"));
    for var in [
        "KRING_DATA_DIR",
        "KRING_DATABASE_URL",
        "KRING_EVENTSTORE_URL",
        "KRING_MASTER_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["verify", "--data-dir"]).arg(&missing);
    let out = common::run(cmd);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!missing.exists(), "the tool never creates a data directory");

    // A directory that is not an installation, and one without its master key.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replay-tool"));
    cmd.env_remove("KRING_DATABASE_URL")
        .env_remove("KRING_MASTER_KEY");
    cmd.arg("status").arg("--data-dir").arg(&empty);
    let out = common::run(cmd);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("holds no Kring event log"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn help_documents_every_subcommand_and_the_exit_codes() {
    let out = common::run({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_replay-tool"));
        c.arg("--help");
        c
    });
    assert_eq!(out.code, 0);
    for word in [
        "rebuild",
        "consent-history",
        "consent-as-of",
        "who-may-see",
        "verify",
        "export",
        "events",
        "status",
        "--data-dir",
        "--format",
        "Exit codes:",
        "3  not found",
    ] {
        assert!(out.stdout.contains(word), "--help should mention {word}");
    }
}
