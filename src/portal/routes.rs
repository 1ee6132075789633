//! The portal's route table: every page and form, registered and listed in one place (the
//! access-matrix test walks [`routes`]).

use actix_web::web;

use super::{accounts, audit, certificates, dashboard, devices, installations, requests, users};

macro_rules! portal_routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every portal page as `(method, path)`: the access-matrix test walks them.
        pub fn routes() -> Vec<(&'static str, &'static str)> {
            vec![$((stringify!($method), $path),)*]
        }

        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

portal_routes! {
    get "/" => dashboard::home;
    get "/entrar" => accounts::login_page;
    post "/entrar" => accounts::login_submit;
    post "/sair" => accounts::logout;
    get "/definir-senha" => accounts::set_password_page;
    post "/definir-senha" => accounts::set_password_submit;
    get "/primeiro-acesso" => accounts::first_access_page;
    post "/primeiro-acesso" => accounts::first_access_submit;
    get "/certificados" => certificates::list;
    get "/certificados/enviar" => certificates::upload_page;
    post "/certificados/enviar" => certificates::upload_submit;
    get "/certificados/{id}" => certificates::detail;
    post "/certificados/{id}/instalar" => certificates::request_install;
    post "/certificados/{id}/senha" => certificates::set_password;
    post "/certificados/{id}/caminho" => certificates::reveal_path;
    get "/solicitacoes" => requests::list;
    get "/solicitacoes/eventos" => requests::events;
    post "/solicitacoes/{id}/aprovar" => requests::approve;
    post "/solicitacoes/{id}/negar" => requests::deny;
    post "/solicitacoes/{id}/cancelar" => requests::cancel;
    get "/instalacoes" => installations::list;
    post "/instalacoes/{id}/remover" => installations::remove;
    get "/dispositivos" => devices::list;
    post "/dispositivos" => devices::provision;
    get "/dispositivos/{id}" => devices::detail;
    post "/dispositivos/{id}" => devices::update;
    post "/dispositivos/{id}/token" => devices::rotate;
    post "/dispositivos/{id}/bloquear" => devices::block;
    post "/dispositivos/{id}/desbloquear" => devices::unblock;
    post "/dispositivos/{id}/remover" => devices::remove;
    get "/usuarios" => users::list;
    post "/usuarios" => users::create;
    post "/usuarios/{id}" => users::update;
    post "/usuarios/{id}/link" => users::password_link;
    post "/usuarios/{id}/desbloquear" => users::unlock;
    get "/auditoria" => audit::page;
    get "/auditoria/export.csv" => audit::export;
    post "/auditoria/quebra/ciente" => audit::acknowledge;
    get "/static/{path:.*}" => crate::http::assets::get;
}
