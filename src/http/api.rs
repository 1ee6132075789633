//! The route table of the JSON API. One macro call both registers every route and describes
//! it, so `GET /openapi.json` cannot miss a route (the seed's walk-through lists its paths
//! from there).

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

/// One documented API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
}

macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path, $tag:literal, $summary:literal;)*) => {
        /// Every API route, as documented.
        pub fn docs() -> Vec<RouteDoc> {
            vec![$(RouteDoc { method: stringify!($method), path: $path, tag: $tag, summary: $summary },)*]
        }

        /// Registers every API route.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

api_routes! {
    get "/health" => super::health::get, "system", "Liveness and database reachability";
    get "/openapi.json" => openapi, "system", "This description of the API";
    post "/api/v1/auth/login" => crate::accounts::api::login, "auth", "Log in: access token + HttpOnly refresh cookie";
    post "/api/v1/auth/refresh" => crate::accounts::api::refresh, "auth", "Rotate the refresh cookie, new access token";
    post "/api/v1/auth/logout" => crate::accounts::api::logout, "auth", "Revoke the session";
    get "/api/v1/auth/me" => crate::accounts::api::me, "auth", "The logged-in user";
    post "/api/v1/auth/password/set/init" => crate::accounts::api::password_set_init, "auth", "One-time password-set link for a user (ADMIN/DEV)";
    post "/api/v1/auth/password/set/confirm" => crate::accounts::api::password_set_confirm, "auth", "Choose a password with a one-time token";
    get "/api/v1/admin/users" => crate::accounts::admin::list, "admin", "Users of the office (ADMIN/DEV)";
    post "/api/v1/admin/users" => crate::accounts::admin::create, "admin", "Create a user; returns their password-set link (ADMIN/DEV)";
    patch "/api/v1/admin/users/{id}" => crate::accounts::admin::patch, "admin", "Change a user (ADMIN/DEV)";
    post "/api/v1/admin/devices" => crate::devices::admin::create, "devices", "Provision a device: its token and a 15-minute enrollment code, shown once (ADMIN/DEV)";
    get "/api/v1/admin/devices" => crate::devices::admin::list, "devices", "Devices of the office with owner, last contact and installed certificates (ADMIN/DEV)";
    get "/api/v1/admin/devices/{id}" => crate::devices::admin::get, "devices", "One device of the office (ADMIN/DEV)";
    patch "/api/v1/admin/devices/{id}" => crate::devices::admin::patch, "devices", "Rename a device or change its owner {hostname?, owner_user_id?: uuid|null} (ADMIN/DEV)";
    post "/api/v1/admin/devices/{id}/rotate-token" => crate::devices::admin::rotate_token, "devices", "New token and enrollment code; the old token and the registered key stop working (ADMIN/DEV)";
    post "/api/v1/admin/devices/{id}/block" => crate::devices::admin::block, "devices", "Block a device (ADMIN/DEV)";
    post "/api/v1/admin/devices/{id}/unblock" => crate::devices::admin::unblock, "devices", "Unblock a device (ADMIN/DEV)";
    get "/agent/install.ps1" => crate::devices::distribution::script, "agent", "PowerShell script that downloads, installs and pairs the agent (?code=enrollment code); paste `irm <server>/agent/install.ps1?code=... | iex`";
    get "/agent/certhub-agent.exe" => crate::devices::distribution::executable, "agent", "The agent executable this server was released with (agent_exe_file), 404 when none is configured";
    post "/api/v1/agent/enroll" => crate::devices::agent::enroll, "agent", "Exchange a one-time enrollment code and the device's public key for its id and token";
    post "/api/v1/agent/auth" => crate::devices::agent::auth, "agent", "Device id + token (+ public key on first use) -> DEVICE access token";
    post "/api/v1/agent/heartbeat" => crate::devices::agent::heartbeat, "agent", "The agent is alive: server time and agent policy (DEVICE)";
    get "/api/v1/agent/jobs" => crate::jobs::agent::list, "agent", "This device's PENDING and IN_PROGRESS jobs (INSTALL and REMOVE), oldest first; ?wait=1..30 long-polls until one is PENDING (DEVICE)";
    post "/api/v1/agent/jobs/{id}/claim" => crate::jobs::agent::claim, "agent", "PENDING -> IN_PROGRESS with a one-time payload_token valid 120 s (an INSTALL job); again on an IN_PROGRESS install: a new token, the old one void (DEVICE)";
    get "/api/v1/agent/jobs/{id}/payload" => crate::jobs::agent::payload, "agent", "The PFX and password sealed to the device's key, once per payload token (?token= or X-Payload-Token); 5 a minute (DEVICE)";
    post "/api/v1/agent/jobs/{id}/result" => crate::jobs::agent::result, "agent", "Report {status: DONE|FAILED, thumbprint?, error_code?, error_message?, key_storage?, key_deleted?}; DONE opens the installation lease (INSTALL) or closes it (REMOVE) (DEVICE)";
    get "/api/v1/agent/installations" => crate::jobs::open_installations::list, "agent", "This device's open installations {installations: [{installation_id, job_id, thumbprint, cert_name, installed_at, expires_at}]}, for the agent to reconcile its record with (DEVICE)";
    post "/api/v1/agent/cleanup" => crate::jobs::agent::cleanup, "agent", "Report removed certificates {mode, removed: [{thumbprint, key_deleted}]}: closes their leases (DEVICE)";
    get "/api/v1/certificados" => crate::certificates::catalogue::list, "certificates", "Search the office's catalogue: q (name, CNPJ/CPF), status (available|unavailable|expired|expiring|unreadable|all), within_days, page, page_size";
    get "/api/v1/certificados/{id}" => crate::certificates::catalogue::get, "certificates", "One certificate of the office";
    post "/api/v1/admin/certificates/{id}/password" => crate::certificates::admin::set_password, "admin", "Store the password of a certificate no file-name password opened, once it opens the file (ADMIN/DEV)";
    get "/api/v1/admin/certificates/{id}/source-path" => crate::certificates::admin::source_path, "admin", "Reveal the certificate's raw source path, audited (ADMIN/DEV)";
    post "/api/v1/certificados/{id}/install" => crate::jobs::api::request_install, "install-jobs", "Ask to install the certificate on a device {device_id, reason?, duration_minutes?}: REQUESTED, or PENDING for auto-approved users";
    get "/api/v1/install-jobs" => crate::jobs::api::list, "install-jobs", "Install and REMOVE jobs of the office (a VIEW: their own), newest first: status, job_type, user_id, device_id, page, page_size";
    get "/api/v1/install-jobs/{id}" => crate::jobs::api::get, "install-jobs", "One install job";
    post "/api/v1/install-jobs/{id}/approve" => crate::jobs::api::approve, "install-jobs", "Approve a REQUESTED job {reason?}: PENDING (ADMIN/DEV)";
    post "/api/v1/install-jobs/{id}/deny" => crate::jobs::api::deny, "install-jobs", "Deny a REQUESTED job {reason}: DENIED (ADMIN/DEV)";
    post "/api/v1/install-jobs/{id}/cancel" => crate::jobs::api::cancel, "install-jobs", "Cancel a REQUESTED or PENDING job (its requester, or ADMIN/DEV)";
    post "/api/v1/admin/jobs/reap" => crate::jobs::api::reap, "admin", "Now: IN_PROGRESS past threshold_minutes -> TIMEOUT, requests past request_ttl_hours -> EXPIRED, installations past lease + grace -> overdue with a REMOVE job (ADMIN/DEV)";
    get "/api/v1/installations" => crate::jobs::installations::list, "installations", "Installations (leases) of the office (a VIEW: their own), newest first: state (open|overdue|removed|all), device_id, user_id, page, page_size";
    get "/api/v1/installations/{id}" => crate::jobs::installations::get, "installations", "One installation";
    post "/api/v1/installations/{id}/remove" => crate::jobs::installations::remove, "installations", "End an installation now {reason?}: a PENDING REMOVE job for the device, delivered through its long-poll (its requester, or ADMIN/DEV)";
    get "/api/v1/audit" => crate::audit::api::list, "audit", "The office's audit log, newest first: action, user_id (actor or entity), device_id (actor or entity), entity_id, from/to (RFC 3339 or YYYY-MM-DD, a `to` day included), page, page_size (ADMIN/DEV)";
    get "/api/v1/audit/export.csv" => crate::audit::api::export_csv, "audit", "The same filters as a streamed CSV (UTF-8 with BOM, attachment auditoria.csv) (ADMIN/DEV)";
    get "/api/v1/audit/verify" => crate::audit::api::verify, "audit", "Verify the office's audit hash chain now: {ok, rows, first_break?: {seq, reason}} (ADMIN/DEV)";
    post "/api/v1/admin/certificates/upload" => crate::certificates::upload::upload_route, "admin", "Send certificate files (multipart/form-data: `file` parts, each with an optional `password` part, the i-th password for the i-th file, empty = the file name's): written into the folder, ingested, sealed; {results: [{file, outcome: ingested|updated|unchanged|failed|refused, certificate_id, detail}]}; at most 20 files of max_pfx_bytes (ADMIN/DEV)";
    post "/api/v1/admin/certificates/ingest-from-fs" => crate::certificates::ingest_from_fs, "admin", "Ingest the certificates folder now; dry_run reports without writing (ADMIN/DEV)";
}

/// The OpenAPI 3.1 document built from [`docs`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in docs() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": format!("{}_{}", r.method, r.path.trim_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "responses": {
                "default": {
                    "description": "Error: {\"error\": code, \"message\": text}",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            }
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "CertHub API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}}
        }}}
    })
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = document();
        for r in docs() {
            assert!(
                doc["paths"][r.path][r.method].is_object(),
                "{} {} missing",
                r.method,
                r.path
            );
        }
    }
}
