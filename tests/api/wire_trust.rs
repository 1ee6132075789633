//! Trust on the wire (issue 23): what an active attacker on the office's LAN must not get.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const PW: &str = "SenhaForte123!";

/// Opens the portal's live stream as `b` and reads it in the background: the instant
/// `event: ended` arrived (or `None` after 30 s) and everything read.
async fn watch_stream(
    b: &reqwest::Client,
    app: &TestApp,
) -> tokio::task::JoinHandle<(Option<Instant>, String)> {
    let mut stream = b
        .get(app.url("/solicitacoes/eventos"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    tokio::spawn(async move {
        let mut seen = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(chunk)) = stream.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("event: ended") {
                    return Some(Instant::now());
                }
            }
            None
        })
        .await;
        (read.ok().flatten(), seen)
    })
}

/// The stream `reader` reads ends within a second of `after` (`what` happened then).
async fn ends_within_a_second(
    reader: tokio::task::JoinHandle<(Option<Instant>, String)>,
    after: Instant,
    what: &str,
) {
    let (ended, seen) = reader.await.unwrap();
    let ended = ended.unwrap_or_else(|| panic!("the stream went on after {what}: {seen}"));
    let took = ended.saturating_duration_since(after);
    eprintln!("stream: {what} -> ended in {took:?}");
    assert!(took < Duration::from_secs(1), "{what}: {took:?}");
}

/// The live stream looks at its session twice a second: a logout and a demotion end it within
/// a second, with nothing else happening on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_ends_within_a_second_of_logout_and_of_demotion() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let o = Office::builder()
        .user("chefe@escritorio.com.br", "ADMIN")
        .start(&db)
        .await;

    // Logout.
    let (view, csrf) = session(&o.app, "view@escritorio.com.br", PW).await;
    let reader = watch_stream(&view, &o.app).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = view
        .post(o.app.url("/sair"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_redirection() || res.status() == 200,
        "{}",
        res.status()
    );
    ends_within_a_second(reader, Instant::now(), "logout").await;

    // Demotion of an ADMIN by another.
    let (chefe, _) = session(&o.app, "chefe@escritorio.com.br", PW).await;
    let reader = watch_stream(&chefe, &o.app).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = o.user_id(o.user("chefe@escritorio.com.br")).await;
    let (status, body) = o
        .call(
            "PATCH",
            &format!("/api/v1/admin/users/{id}"),
            Some(json!({"role_global": "VIEW"})),
            &o.admin.access,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ends_within_a_second(reader, Instant::now(), "demotion").await;
}
