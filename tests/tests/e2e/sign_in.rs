//! Sign-in on the real binary: a teacher added with their identity at the school board's
//! sign-in service signs in with that service's token, and a token minted by `kring-api token`
//! is revoked by `kring-api token --revoke` run beside the serving process. On SQLite and on
//! PostgreSQL.

use crate::harness::{Backend, Server, Who};
use crate::school::School;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

async fn sign_in_and_revocation(backend: Backend) {
    let api = Server::start(backend).await;
    let s = School::build(&api).await;
    let added = api
        .post(
            &format!("/v1/schools/{}/staff", s.id),
            Who::Person(s.director),
            json!({"display_name": "Meester Kees", "email": "kees@school.example",
                   "role": "teacher", "sso_subject": "kees.k@board"}),
        )
        .await;
    let kees = added.id("person_id");
    let me = api
        .send_bearer(Method::GET, "/v1/me", &api.issuer_token("kees.k@board"))
        .await;
    assert_eq!(me.expect(200)["person_id"], kees.to_string());
    // A Kring id as the issuer's subject is nobody.
    api.send_bearer(Method::GET, "/v1/me", &api.issuer_token(&kees.to_string()))
        .await
        .problem(401, "unauthenticated");

    // A token from the command line, and its id on stderr.
    let kees_id = kees.to_string();
    let minted = api.cli(&["token", "--person", &kees_id]);
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(minted.stderr).unwrap();
    let jti = stderr
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .unwrap_or_else(|| panic!("a token id in {stderr:?}"))
        .to_owned();
    api.send_bearer(Method::GET, "/v1/me", &token)
        .await
        .expect(200);

    let revoked = api.cli(&["token", "--revoke", &jti]);
    assert!(revoked.status.success(), "{revoked:?}");
    // The serving process refuses it once its read models have the revocation.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api.send_bearer(Method::GET, "/v1/me", &token).await;
        if answer.status == 401 {
            answer.problem(401, "unauthenticated");
            break;
        }
        assert_eq!(answer.status, 200);
        assert!(Instant::now() < deadline, "the revoked token still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Revoked once is enough: a second revocation says so and fails.
    let again = api.cli(&["token", "--revoke", &jti]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoked"));
    // Kees' issuer sign-in is untouched.
    api.send_bearer(Method::GET, "/v1/me", &api.issuer_token("kees.k@board"))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_and_token_revocation_on_sqlite() {
    sign_in_and_revocation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_and_token_revocation_on_postgres() {
    sign_in_and_revocation(Backend::Postgres).await;
}
