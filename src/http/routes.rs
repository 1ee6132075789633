//! The route table of the JSON API (the handlers live in each area's `routes`). One macro call both registers every route and describes
//! it, so `GET /openapi.json` cannot miss a route (the seed's walk-through lists its paths
//! from there).

use actix_web::{HttpResponse, web};

use super::openapi::{Content, RouteDoc, SchemaFn, document, schema_of};

/// The table: `method "path" => handler, "tag", "summary"`, then what the route takes and
/// answers, each optional: `body: T` (JSON), `form: T` (multipart), `query: T`, then one or
/// more `ok STATUS: T` (JSON) or `raw STATUS "media/type"`.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path, $tag:literal, $summary:literal
        $(, body: $body:ty)? $(, form: $form:ty)? $(, query: $query:ty)?
        $(, ok $status:literal: $ok:ty)* $(, raw $rstatus:literal $mime:literal)*;)*) => {
        /// Every API route, as documented.
        pub fn docs() -> Vec<RouteDoc> {
            vec![$(RouteDoc {
                method: stringify!($method),
                path: $path,
                tag: $tag,
                summary: $summary,
                body: None $(.or(Some(Content::Json(schema_of::<$body>))))?
                    $(.or(Some(Content::Multipart(schema_of::<$form>))))?,
                query: None $(.or(Some(schema_of::<$query> as SchemaFn)))?,
                responses: vec![$(($status, Content::Json(schema_of::<$ok>)),)* $(($rstatus, Content::Raw($mime)),)*],
            },)*]
        }

        /// Registers every API route.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

api_routes! {
    get "/health" => super::health::get, "system", "Liveness and database reachability", ok 200: crate::protocol::Health, ok 503: crate::protocol::Health;
    get "/openapi.json" => openapi, "system", "This description of the API", ok 200: serde_json::Value;
    post "/api/v1/auth/login" => crate::accounts::routes::login, "auth", "Log in: access token + HttpOnly refresh cookie", body: crate::accounts::routes::LoginBody, ok 200: crate::accounts::routes::AccessTokenResponse;
    post "/api/v1/auth/refresh" => crate::accounts::routes::refresh, "auth", "Rotate the refresh cookie, new access token", ok 200: crate::accounts::routes::AccessTokenResponse;
    post "/api/v1/auth/logout" => crate::accounts::routes::logout, "auth", "Revoke the session", ok 200: crate::accounts::routes::Acknowledged;
    get "/api/v1/auth/me" => crate::accounts::routes::me, "auth", "The logged-in user", ok 200: crate::accounts::administration::UserView;
    post "/api/v1/auth/password/set/init" => crate::accounts::routes::password_set_init, "auth", "One-time password-set link for a user (ADMIN/DEV)", body: crate::accounts::routes::SetInitBody, ok 200: crate::accounts::routes::PasswordLinkResponse;
    post "/api/v1/auth/password/set/confirm" => crate::accounts::routes::password_set_confirm, "auth", "Choose a password with a one-time token", body: crate::accounts::routes::SetConfirmBody, ok 200: crate::accounts::routes::Acknowledged;
    get "/api/v1/admin/users" => crate::accounts::routes::list, "admin", "Users of the office (ADMIN/DEV)", ok 200: Vec<crate::accounts::administration::UserView>;
    post "/api/v1/admin/users" => crate::accounts::routes::create, "admin", "Create a user; returns their password-set link (ADMIN/DEV)", body: crate::accounts::administration::CreateBody, ok 201: crate::accounts::routes::CreatedResponse;
    patch "/api/v1/admin/users/{id}" => crate::accounts::routes::patch, "admin", "Change a user (ADMIN/DEV)", body: crate::accounts::administration::PatchBody, ok 200: crate::accounts::administration::UserView;
    post "/api/v1/admin/users/{id}/unlock" => crate::accounts::routes::unlock, "admin", "End a lockout by wrong passwords (ADMIN for VIEW/ADMIN, DEV for all); audited USER_UNLOCKED", ok 200: crate::accounts::routes::Unlocked;
    post "/api/v1/admin/devices" => crate::devices::routes::create, "devices", "Provision a device: its token and a 15-minute enrollment code, shown once (ADMIN/DEV)", body: crate::devices::provisioning::CreateBody, ok 201: crate::devices::provisioning::CredentialsResponse;
    get "/api/v1/admin/devices" => crate::devices::routes::list, "devices", "Devices of the office with owner, last contact and installed certificates (ADMIN/DEV)", ok 200: Vec<crate::devices::provisioning::DeviceView>;
    get "/api/v1/admin/devices/{id}" => crate::devices::routes::get, "devices", "One device of the office (ADMIN/DEV)", ok 200: crate::devices::provisioning::DeviceView;
    patch "/api/v1/admin/devices/{id}" => crate::devices::routes::patch, "devices", "Rename a device or change its owner {hostname?, owner_user_id?: uuid|null} (ADMIN/DEV)", body: crate::devices::provisioning::PatchBody, ok 200: crate::devices::provisioning::DeviceView;
    post "/api/v1/admin/devices/{id}/rotate-token" => crate::devices::routes::rotate_token, "devices", "New token and enrollment code; the old token and the registered key stop working (ADMIN/DEV)", ok 200: crate::devices::provisioning::CredentialsResponse;
    post "/api/v1/admin/devices/{id}/block" => crate::devices::routes::block, "devices", "Block a device (ADMIN/DEV)", ok 200: crate::devices::provisioning::DeviceView;
    post "/api/v1/admin/devices/{id}/unblock" => crate::devices::routes::unblock, "devices", "Unblock a device (ADMIN/DEV)", ok 200: crate::devices::provisioning::DeviceView;
    delete "/api/v1/admin/devices/{id}" => crate::devices::routes::remove, "devices", "Remove a computer from the office: blocked, its certificates removed by its agent, gone from the lists; its history stays (ADMIN/DEV)", ok 200: crate::accounts::routes::Acknowledged;
    get "/agent/install.ps1" => crate::devices::routes::script, "agent", "PowerShell script that downloads, installs and pairs the agent (?code=enrollment code); paste `irm <server>/agent/install.ps1?code=... | iex`", query: crate::devices::routes::ScriptQuery, raw 200 "text/plain";
    get "/agent/certhub-agent.exe" => crate::devices::routes::executable, "agent", "The agent executable this server was released with (agent_exe_file), 404 when none is configured", raw 200 "application/vnd.microsoft.portable-executable";
    post "/api/v1/agent/enroll" => crate::devices::routes::enroll, "agent", "Exchange a one-time enrollment code and the device's public key for its id and token", body: crate::protocol::EnrollRequest, ok 200: crate::protocol::DeviceCredentials;
    post "/api/v1/agent/auth" => crate::devices::routes::auth, "agent", "Device id + token (+ public key on first use) -> DEVICE access token", body: crate::protocol::DeviceAuthRequest, ok 200: crate::protocol::DeviceAuthResponse;
    post "/api/v1/agent/heartbeat" => crate::devices::routes::heartbeat, "agent", "The agent is alive: server time and agent policy (DEVICE)", body: crate::protocol::HeartbeatRequest, ok 200: crate::protocol::HeartbeatResponse;
    get "/api/v1/agent/jobs" => crate::jobs::routes::agent_jobs, "agent", "This device's PENDING and IN_PROGRESS jobs (INSTALL and REMOVE), oldest first; ?wait=1..30 long-polls until one is PENDING (DEVICE)", query: crate::jobs::routes::InboxQuery, ok 200: crate::protocol::AgentJobs;
    post "/api/v1/agent/jobs/{id}/claim" => crate::jobs::routes::claim, "agent", "PENDING -> IN_PROGRESS with a one-time payload_token valid 120 s (an INSTALL job); again on an IN_PROGRESS install: a new token, the old one void (DEVICE)", ok 200: crate::protocol::ClaimResponse;
    get "/api/v1/agent/jobs/{id}/payload" => crate::jobs::routes::payload, "agent", "The PFX and password sealed to the device's key, once per payload token (?token= or X-Payload-Token); 5 a minute (DEVICE)", query: crate::jobs::routes::PayloadQuery, ok 200: crate::protocol::PayloadResponse;
    post "/api/v1/agent/jobs/{id}/result" => crate::jobs::routes::result, "agent", "Report {status: DONE|FAILED, thumbprint?, error_code?, error_message?, key_storage?, key_deleted?}; DONE opens the installation lease (INSTALL) or closes it (REMOVE) (DEVICE)", body: crate::protocol::ResultRequest, ok 200: crate::protocol::ResultResponse;
    get "/api/v1/agent/installations" => crate::jobs::routes::agent_installations, "agent", "This device's open installations {installations: [{installation_id, job_id, thumbprint, cert_name, installed_at, expires_at}]}, for the agent to reconcile its record with (DEVICE)", ok 200: crate::protocol::OpenInstallations;
    post "/api/v1/agent/cleanup" => crate::jobs::routes::cleanup, "agent", "Report removed certificates {mode, removed: [{thumbprint, key_deleted}]}: closes their leases (DEVICE)", body: crate::protocol::CleanupRequest, ok 200: crate::protocol::CleanupResponse;
    post "/api/v1/agent/uninstall" => crate::jobs::routes::uninstall, "agent", "The agent is being uninstalled (after its cleanup with mode uninstall): the device's open installations close (CERT_REMOVED_UNINSTALL), its waiting installs are cancelled, its token and key are void until it is paired again (DEVICE)", ok 200: crate::protocol::CleanupResponse;
    get "/api/v1/certificados" => crate::certificates::routes::list, "certificates", "Search the office's catalogue: q (name, CNPJ/CPF), status (available|unavailable|expired|expiring|unreadable|all), within_days, page, page_size", query: crate::certificates::catalogue::ListQuery, ok 200: crate::certificates::catalogue::CataloguePage;
    get "/api/v1/certificados/{id}" => crate::certificates::routes::get, "certificates", "One certificate of the office", ok 200: crate::certificates::catalogue::CertificateView;
    post "/api/v1/admin/certificates/{id}/password" => crate::certificates::routes::set_password, "admin", "Store the password of a certificate no file-name password opened, once it opens the file (ADMIN/DEV)", body: crate::certificates::routes::PasswordBody, ok 200: crate::certificates::catalogue::CertificateView;
    get "/api/v1/admin/certificates/{id}/source-path" => crate::certificates::routes::source_path, "admin", "Reveal the certificate's raw source path, audited (ADMIN/DEV)", ok 200: crate::certificates::routes::SourcePath;
    post "/api/v1/certificados/{id}/install" => crate::jobs::routes::request_install, "install-jobs", "Ask to install the certificate on a device {device_id, reason?, duration_minutes?}: REQUESTED, or PENDING for auto-approved users", body: crate::jobs::requests::InstallBody, ok 201: crate::jobs::requests::JobView;
    get "/api/v1/install-jobs" => crate::jobs::routes::list, "install-jobs", "Install and REMOVE jobs of the office (a VIEW: their own), newest first: status, job_type, user_id, device_id, page, page_size", query: crate::jobs::routes::JobListQuery, ok 200: crate::paging::Page<crate::jobs::requests::JobView>;
    get "/api/v1/install-jobs/{id}" => crate::jobs::routes::get, "install-jobs", "One install job", ok 200: crate::jobs::requests::JobView;
    post "/api/v1/install-jobs/{id}/approve" => crate::jobs::routes::approve, "install-jobs", "Approve a REQUESTED job {reason?}: PENDING (ADMIN/DEV)", body: crate::jobs::routes::DecisionBody, ok 200: crate::jobs::requests::JobView;
    post "/api/v1/install-jobs/{id}/deny" => crate::jobs::routes::deny, "install-jobs", "Deny a REQUESTED job {reason}: DENIED (ADMIN/DEV)", body: crate::jobs::routes::DecisionBody, ok 200: crate::jobs::requests::JobView;
    post "/api/v1/install-jobs/{id}/cancel" => crate::jobs::routes::cancel, "install-jobs", "Cancel a REQUESTED or PENDING job (its requester, or ADMIN/DEV)", ok 200: crate::jobs::requests::JobView;
    post "/api/v1/admin/jobs/reap" => crate::jobs::routes::reap, "admin", "Now: IN_PROGRESS past threshold_minutes -> TIMEOUT, requests past request_ttl_hours -> EXPIRED, installations past lease + grace -> overdue with a REMOVE job (ADMIN/DEV)", query: crate::jobs::routes::ReapQuery, ok 200: crate::jobs::Sweep;
    get "/api/v1/installations" => crate::jobs::routes::installations, "installations", "Installations (leases) of the office (a VIEW: their own), newest first: state (open|overdue|removed|all), device_id, user_id, page, page_size", query: crate::jobs::routes::InstallationListQuery, ok 200: crate::paging::Page<crate::jobs::installations::InstallationView>;
    get "/api/v1/installations/{id}" => crate::jobs::routes::installation, "installations", "One installation", ok 200: crate::jobs::installations::InstallationView;
    post "/api/v1/installations/{id}/remove" => crate::jobs::routes::remove, "installations", "End an installation now {reason?}: a PENDING REMOVE job for the device, delivered through its long-poll (its requester, or ADMIN/DEV)", body: crate::jobs::routes::RemoveBody, ok 200: crate::jobs::requests::JobView, ok 201: crate::jobs::requests::JobView;
    get "/api/v1/audit" => crate::audit::routes::list, "audit", "The office's audit log, newest first: action, user_id (actor or entity), device_id (actor or entity), entity_id, from/to (RFC 3339 or YYYY-MM-DD, a `to` day included), page, page_size (ADMIN/DEV)", query: crate::audit::query::AuditQuery, ok 200: crate::paging::Page<crate::audit::query::AuditItem>;
    get "/api/v1/audit/export.csv" => crate::audit::routes::export_csv, "audit", "The same filters as a streamed CSV (UTF-8 with BOM, attachment auditoria.csv) (ADMIN/DEV)", query: crate::audit::query::AuditQuery, raw 200 "text/csv";
    get "/api/v1/audit/verify" => crate::audit::routes::verify, "audit", "Verify the office's audit hash chain now: {ok, rows, first_break?: {seq, reason}} (ADMIN/DEV)", ok 200: crate::audit::verification::VerifyView;
    post "/api/v1/admin/certificates/upload" => crate::certificates::routes::upload, "admin", "Send certificate files (multipart/form-data: `file` parts, each with an optional `password` part, the i-th password for the i-th file, empty = the file name's): written into the folder, ingested, sealed; {results: [{file, outcome: ingested|updated|unchanged|failed|refused, certificate_id, detail}]}; at most 20 files of max_pfx_bytes (ADMIN/DEV)", form: crate::certificates::upload_form::UploadForm, ok 200: crate::certificates::routes::UploadResponse;
    post "/api/v1/admin/certificates/ingest-from-fs" => crate::certificates::routes::ingest_from_fs, "admin", "Ingest the certificates folder now; dry_run reports without writing (ADMIN/DEV)", body: crate::certificates::routes::IngestBody, ok 200: crate::certificates::ingest::Report;
}

/// Routes anyone may call; every other route wants a bearer token (a user's or a device's).
const PUBLIC: &[&str] = &[
    "/health",
    "/openapi.json",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/password/set/confirm",
    "/agent/install.ps1",
    "/agent/certhub-agent.exe",
    "/api/v1/agent/enroll",
    "/api/v1/agent/auth",
];

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document(&docs(), PUBLIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = document(&docs(), PUBLIC);
        for r in docs() {
            assert!(
                doc["paths"][r.path][r.method].is_object(),
                "{} {} missing",
                r.method,
                r.path
            );
        }
    }

    /// Every `$ref` points at a schema the document holds, and every route that reads a body
    /// or answers JSON says with what, so a client can be generated from it.
    #[test]
    fn every_schema_is_described_and_every_reference_resolves() {
        let doc = document(&docs(), PUBLIC);
        if let Ok(path) = std::env::var("CERTHUB_OPENAPI_DUMP") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
            let rest = &text[i + "\"$ref\":\"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        for r in docs() {
            assert!(
                !r.responses.is_empty(),
                "{} {} documents no success answer",
                r.method,
                r.path
            );
            if r.method == "post" || r.method == "patch" {
                let op = &doc["paths"][r.path][r.method];
                let bodiless = [
                    "/claim",
                    "/cancel",
                    "/block",
                    "/unblock",
                    "/rotate-token",
                    "/refresh",
                    "/logout",
                    "/reap",
                    "/unlock",
                    "/agent/uninstall",
                ];
                assert!(
                    op["requestBody"].is_object() || bodiless.iter().any(|b| r.path.ends_with(b)),
                    "{} {} takes a body it does not describe",
                    r.method,
                    r.path
                );
            }
        }
    }
}
