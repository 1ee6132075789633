use crate::helpers::*;

/// Routes are registered and documented by one table (`http::api`), so the document cannot
/// miss a registered API route; this checks the other direction: every documented route is
/// really served (not the router's fallback), plus the paths the walk-through relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_served_route() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = spawn_app(&db).await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for expected in ["/health", "/openapi.json"] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from /openapi.json"
        );
    }
    for route in certhub::http::routes::docs() {
        assert!(paths[route.path][route.method].is_object());
        let path = route
            .path
            .replace("{id}", &uuid::Uuid::new_v4().to_string());
        let res = app
            .client
            .request(route.method.to_uppercase().parse().unwrap(), app.url(&path))
            .send()
            .await
            .unwrap();
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("no such route"),
            "{} {} is documented but not served",
            route.method,
            route.path
        );
    }
}
