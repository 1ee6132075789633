//! What the agent's tray shows, with no Windows in it: the states and their tooltips, the menu
//! commands and their labels, the Status text, the pairing form's validation and the balloon
//! texts, all in Portuguese. The Windows side (`windows::tray`, `windows::ui`) only draws these;
//! the job loop decides which to show.

use std::fmt;

use chrono::{DateTime, Local, TimeDelta};

use super::state::AgentState;

/// The product name, first word of every tooltip and the balloons' title.
pub const APP_NAME: &str = "CertHub";

/// What the tray icon says about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrayState {
    /// No device token yet: the user must pair the device.
    NotPaired,
    /// Heartbeats reach the server.
    Online,
    /// Paired, but the last attempts to reach the server failed.
    ServerUnreachable,
    /// The server presented a certificate other than the one pinned: nothing is done.
    CertificateChanged,
    /// Something the user should look at (shown in the tooltip).
    Error(String),
}

impl TrayState {
    /// The tooltip, e.g. "CertHub — conectado". Windows keeps at most 127 UTF-16 units: see
    /// [`fit_utf16`].
    pub fn tooltip(&self) -> String {
        match self {
            TrayState::NotPaired => format!("{APP_NAME} — não pareado"),
            TrayState::Online => format!("{APP_NAME} — conectado"),
            TrayState::ServerUnreachable => format!("{APP_NAME} — servidor inacessível"),
            TrayState::CertificateChanged => {
                format!("{APP_NAME} — o certificado do servidor mudou")
            }
            TrayState::Error(message) if message.trim().is_empty() => format!("{APP_NAME} — erro"),
            TrayState::Error(message) => format!("{APP_NAME} — erro: {}", message.trim()),
        }
    }

    /// The state in a few words, for the first line of the Status text.
    pub fn summary(&self) -> String {
        match self {
            TrayState::NotPaired => "não pareado".into(),
            TrayState::Online => "conectado".into(),
            TrayState::ServerUnreachable => "servidor inacessível".into(),
            TrayState::CertificateChanged => "o certificado do servidor mudou".into(),
            TrayState::Error(message) if message.trim().is_empty() => "erro".into(),
            TrayState::Error(message) => format!("erro: {}", message.trim()),
        }
    }

    /// Which icon to draw: one per kind of state, so the user sees a change at a glance.
    pub fn icon(&self) -> TrayIcon {
        match self {
            TrayState::NotPaired => TrayIcon::NotPaired,
            TrayState::Online => TrayIcon::Online,
            TrayState::ServerUnreachable | TrayState::CertificateChanged => TrayIcon::Warning,
            TrayState::Error(_) => TrayIcon::Error,
        }
    }
}

/// The icon kinds; the Windows side maps each to an icon (a coloured disc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrayIcon {
    NotPaired,
    Online,
    Warning,
    Error,
}

impl TrayIcon {
    pub const ALL: [TrayIcon; 4] = [
        TrayIcon::NotPaired,
        TrayIcon::Online,
        TrayIcon::Warning,
        TrayIcon::Error,
    ];

    /// Fill colour of the disc, `(r, g, b)`: grey, green, amber, red.
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            TrayIcon::NotPaired => (0x80, 0x86, 0x8c),
            TrayIcon::Online => (0x1e, 0x9e, 0x4a),
            TrayIcon::Warning => (0xe8, 0xa3, 0x17),
            TrayIcon::Error => (0xd3, 0x2f, 0x2f),
        }
    }

    /// A `size`×`size` icon as premultiplied BGRA pixels (`0xAARRGGBB`, top row first): a
    /// disc of [`rgb`](Self::rgb) with a darker rim and a white centre dot, transparent
    /// outside, edges anti-aliased.
    pub fn argb_pixels(self, size: u32) -> Vec<u32> {
        let (r, g, b) = self.rgb();
        let dark = |c: u8| (c as f32 * 0.6) as u8;
        let rim = (dark(r), dark(g), dark(b));
        let centre = size as f32 / 2.0;
        let radius = centre - 0.5;
        let dot = size as f32 / 6.0;
        let mut pixels = Vec::with_capacity((size * size) as usize);
        for y in 0..size {
            for x in 0..size {
                let dx = x as f32 + 0.5 - centre;
                let dy = y as f32 + 0.5 - centre;
                let d = (dx * dx + dy * dy).sqrt();
                // coverage of the disc, anti-aliased over one pixel
                let alpha = (radius - d + 0.5).clamp(0.0, 1.0);
                let (pr, pg, pb) = if d <= dot {
                    (0xff, 0xff, 0xff)
                } else if d >= radius - size as f32 / 10.0 {
                    rim
                } else {
                    (r, g, b)
                };
                let a = (alpha * 255.0).round() as u32;
                let pm = |c: u8| (c as f32 * alpha).round() as u32;
                pixels.push((a << 24) | (pm(pr) << 16) | (pm(pg) << 8) | pm(pb));
            }
        }
        pixels
    }
}

/// The context menu's commands, in menu order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MenuCommand {
    Status,
    OpenPortal,
    RemoveNow,
    Pair,
    ToggleStartWithWindows,
    Quit,
}

impl MenuCommand {
    pub const ALL: [MenuCommand; 6] = [
        MenuCommand::Status,
        MenuCommand::OpenPortal,
        MenuCommand::RemoveNow,
        MenuCommand::Pair,
        MenuCommand::ToggleStartWithWindows,
        MenuCommand::Quit,
    ];

    /// The menu item's text.
    pub fn label(self) -> &'static str {
        match self {
            MenuCommand::Status => "Status",
            MenuCommand::OpenPortal => "Abrir portal",
            MenuCommand::RemoveNow => "Remover certificados agora",
            MenuCommand::Pair => "Parear dispositivo",
            MenuCommand::ToggleStartWithWindows => "Iniciar com o Windows",
            MenuCommand::Quit => "Sair",
        }
    }

    /// The menu item id (never 0: `TrackPopupMenu` returns 0 for "nothing chosen").
    pub fn id(self) -> u32 {
        match self {
            MenuCommand::Status => 1,
            MenuCommand::OpenPortal => 2,
            MenuCommand::RemoveNow => 3,
            MenuCommand::Pair => 4,
            MenuCommand::ToggleStartWithWindows => 5,
            MenuCommand::Quit => 6,
        }
    }

    pub fn from_id(id: u32) -> Option<MenuCommand> {
        MenuCommand::ALL.into_iter().find(|c| c.id() == id)
    }
}

/// The menu as drawn: `None` is a separator.
pub fn menu_layout() -> Vec<Option<MenuCommand>> {
    use MenuCommand::*;
    vec![
        Some(Status),
        Some(OpenPortal),
        None,
        Some(RemoveNow),
        Some(Pair),
        None,
        Some(ToggleStartWithWindows),
        None,
        Some(Quit),
    ]
}

/// What the Status window and the `status` command show.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub state: TrayState,
    /// The server's URL (empty when not configured).
    pub server: String,
    /// The device's name and id, `None` when not paired.
    pub device: Option<String>,
    /// When the server last answered a heartbeat.
    pub last_heartbeat: Option<DateTime<Local>>,
    /// This computer's clock minus the server's, as of the last heartbeat.
    pub clock_skew: Option<TimeDelta>,
    /// Installed certificates and the time left until their removal.
    pub certificates: Vec<(String, TimeDelta)>,
    /// The last lines of the agent's log, oldest first.
    pub log_tail: Vec<String>,
}

/// A clock skew beyond this is worth telling the user about (tokens and the 18:00 removal
/// depend on the clock).
pub const CLOCK_SKEW_WARNING: TimeDelta = TimeDelta::minutes(2);

impl StatusView {
    /// The text, lines separated by `\n` (an EDIT control wants `\r\n`: see [`crlf`]).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("{APP_NAME} — {}", self.state.summary()));
        line(String::new());
        line(format!(
            "Servidor: {}",
            if self.server.is_empty() {
                "(não configurado)"
            } else {
                &self.server
            }
        ));
        line(format!(
            "Dispositivo: {}",
            self.device.as_deref().unwrap_or("(não pareado)")
        ));
        line(format!(
            "Último contato com o servidor: {}",
            self.last_heartbeat
                .map(|t| t.format("%d/%m/%Y %H:%M:%S").to_string())
                .unwrap_or_else(|| "nunca".into())
        ));
        line(format!(
            "Diferença do relógio: {}",
            match self.clock_skew {
                None => "desconhecida".into(),
                Some(skew) if skew.abs() > CLOCK_SKEW_WARNING => {
                    format!("{} (acerte o relógio do Windows)", format_skew(skew))
                }
                Some(skew) => format_skew(skew),
            }
        ));
        line(String::new());
        if self.certificates.is_empty() {
            line("Nenhum certificado instalado.".into());
        } else {
            line(format!(
                "Certificados instalados ({}):",
                self.certificates.len()
            ));
            for (name, left) in &self.certificates {
                line(format!("  • {name} — {}", format_time_left(*left)));
            }
        }
        if !self.log_tail.is_empty() {
            line(String::new());
            line("Últimas mensagens:".into());
            for entry in &self.log_tail {
                line(format!("  {entry}"));
            }
        }
        out
    }
}

/// "+3 s", "-1 min 05 s", "+2 h 00 min".
pub fn format_skew(skew: TimeDelta) -> String {
    let sign = if skew < TimeDelta::zero() { '-' } else { '+' };
    let secs = skew.num_seconds().unsigned_abs();
    let body = if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
    };
    format!("{sign}{body}")
}

/// "resta 1 h 05 min", "restam 12 min", "menos de 1 min", "remoção pendente".
pub fn format_time_left(left: TimeDelta) -> String {
    let secs = left.num_seconds();
    if secs <= 0 {
        return "remoção pendente".into();
    }
    let minutes = (secs + 59) / 60; // round up: "1 min" until it is gone
    if secs < 60 {
        "menos de 1 min".into()
    } else if minutes < 60 {
        format!(
            "{} {minutes} min",
            if minutes == 1 { "resta" } else { "restam" }
        )
    } else {
        let hours = minutes / 60;
        format!(
            "{} {hours} h {:02} min",
            if hours == 1 { "resta" } else { "restam" },
            minutes % 60
        )
    }
}

/// `\n` line ends as `\r\n` (what a multiline EDIT control shows as new lines).
pub fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// `text` as at most `max_units - 1` UTF-16 units plus a NUL, cut at a character boundary and
/// ending in "…" when cut: for the fixed buffers of `NOTIFYICONDATAW` (tooltip 128, balloon
/// title 64, balloon text 256).
pub fn fit_utf16(text: &str, max_units: usize) -> Vec<u16> {
    let room = max_units.saturating_sub(1);
    let mut units: Vec<u16> = text.encode_utf16().collect();
    if units.len() > room {
        units.truncate(room.saturating_sub(1));
        // do not leave half a surrogate pair
        if units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
            units.pop();
        }
        if room > 0 {
            units.push('…' as u16);
        }
    }
    units.push(0);
    units
}

/// What the pairing dialog returns: the server, and either a pairing code or a device id and
/// token that the portal showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRequest {
    pub server_url: String,
    pub code: Option<String>,
    pub device_id: Option<String>,
    pub device_token: Option<String>,
    /// The server certificate's SHA-256 fingerprint to pin (optional).
    pub fingerprint: Option<String>,
}

/// Why the pairing form was refused; `Display` is the message shown in the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairError {
    MissingServer,
    BadServerUrl,
    MissingCredentials,
    IdWithoutToken,
    TokenWithoutId,
    CodeAndToken,
    BadFingerprint,
}

impl fmt::Display for PairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairError::MissingServer => "Informe o endereço do servidor.",
            PairError::BadServerUrl => {
                "O endereço do servidor deve começar com http:// ou https:// (ex.: https://certhub.exemplo.com.br)."
            }
            PairError::MissingCredentials => {
                "Informe o código de pareamento, ou o ID do dispositivo e o token."
            }
            PairError::IdWithoutToken => "Informe também o token do dispositivo.",
            PairError::TokenWithoutId => "Informe também o ID do dispositivo.",
            PairError::CodeAndToken => {
                "Use o código de pareamento ou o ID e o token, não os dois."
            }
            PairError::BadFingerprint => {
                "A impressão digital do certificado tem 64 dígitos hexadecimais (como em Dispositivos, no portal); deixe em branco se o Windows já confia no certificado."
            }
        })
    }
}

impl std::error::Error for PairError {}

impl PairRequest {
    /// The form's fields as typed: trimmed, empty ones as `None`, then [`validate`](Self::validate)d.
    pub fn from_fields(
        server_url: &str,
        code: &str,
        device_id: &str,
        device_token: &str,
        fingerprint: &str,
    ) -> Result<PairRequest, PairError> {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let request = PairRequest {
            server_url: server_url.trim().trim_end_matches('/').to_string(),
            code: some(code),
            device_id: some(device_id),
            device_token: some(device_token),
            fingerprint: some(fingerprint),
        };
        request.validate()?;
        Ok(request)
    }

    /// The URL is http(s) with a host and no spaces; there is a code, or an id with a token,
    /// not both.
    pub fn validate(&self) -> Result<(), PairError> {
        let url = self.server_url.trim();
        if url.is_empty() {
            return Err(PairError::MissingServer);
        }
        if !valid_server_url(url) {
            return Err(PairError::BadServerUrl);
        }
        if self
            .fingerprint
            .as_deref()
            .is_some_and(|f| crate::protocol::Fingerprint::parse(f).is_none())
        {
            return Err(PairError::BadFingerprint);
        }
        let present = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
        let code = present(&self.code);
        let id = present(&self.device_id);
        let token = present(&self.device_token);
        match (code, id, token) {
            (true, false, false) | (false, true, true) => Ok(()),
            (true, _, _) => Err(PairError::CodeAndToken),
            (false, false, false) => Err(PairError::MissingCredentials),
            (false, true, false) => Err(PairError::IdWithoutToken),
            (false, false, true) => Err(PairError::TokenWithoutId),
        }
    }
}

/// `http://host[...]` or `https://host[...]` (scheme in any case), no whitespace, a host that
/// is not empty.
fn valid_server_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    !host.is_empty() && port_ok && !url.chars().any(char::is_whitespace)
}

/// Seconds without a heartbeat after which the server counts as away.
pub const STALE_AFTER_SECS: i64 = 180;

impl TrayState {
    /// What the agent's files say: not paired, refused (token, blocked), the server away (one
    /// failed call is enough, not a stale heartbeat), or online.
    pub fn of(paired: bool, state: &AgentState, now: chrono::DateTime<chrono::Utc>) -> Self {
        if !paired {
            return TrayState::NotPaired;
        }
        if let Some(error) = state
            .last_error
            .as_deref()
            .filter(|e| e.contains("Falha de autenticação") || e.contains("bloqueado"))
        {
            return TrayState::Error(error.to_owned());
        }
        match state.last_error.as_deref() {
            Some(e) if e.starts_with(super::client::CERTIFICATE_CHANGED) => {
                return TrayState::CertificateChanged;
            }
            Some(_) => return TrayState::ServerUnreachable,
            None => {}
        }
        match state.last_heartbeat_at {
            Some(at) if (now - at).num_seconds() <= STALE_AFTER_SECS => TrayState::Online,
            _ => TrayState::ServerUnreachable,
        }
    }
}

/// A balloon notification's title and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balloon {
    pub title: String,
    pub text: String,
}

/// "Certificado instalado" / "<name> instalado até 18:00".
pub fn installed_balloon(cert_name: &str, until: &str) -> Balloon {
    Balloon {
        title: "Certificado instalado".into(),
        text: format!("{cert_name} instalado até {until}"),
    }
}

/// "Certificado removido" / "<name> removido deste computador".
pub fn removed_balloon(cert_name: &str) -> Balloon {
    Balloon {
        title: "Certificado removido".into(),
        text: format!("{cert_name} removido deste computador"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn one_failed_call_turns_the_tray_amber_and_an_answer_turns_it_back() {
        let now = chrono::Utc::now();
        let mut state = AgentState {
            last_heartbeat_at: Some(now - chrono::Duration::seconds(10)),
            ..Default::default()
        };
        assert_eq!(TrayState::of(true, &state, now), TrayState::Online);
        state.last_error = Some(
            "Servidor inacessível (http://certhub:8010): connection refused. Verifique a rede e se o CertHub está no ar."
                .into(),
        );
        assert_eq!(
            TrayState::of(true, &state, now),
            TrayState::ServerUnreachable
        );
        state.last_error = Some(
            super::super::client::ClientError::CertificateChanged {
                url: "https://certhub:8010/api/v1/agent/jobs".into(),
                presented: "AA:BB".into(),
                pinned: "CC:DD".into(),
            }
            .to_string(),
        );
        let changed = TrayState::of(true, &state, now);
        assert_eq!(changed, TrayState::CertificateChanged);
        assert_eq!(changed.icon(), TrayIcon::Warning, "amber");
        assert_eq!(
            changed.tooltip(),
            "CertHub — o certificado do servidor mudou"
        );
        state.last_error = Some("Dispositivo bloqueado pelo administrador do CertHub.".into());
        assert!(matches!(
            TrayState::of(true, &state, now),
            TrayState::Error(_)
        ));
        state.last_error = None;
        assert_eq!(TrayState::of(true, &state, now), TrayState::Online);
        assert_eq!(TrayState::of(false, &state, now), TrayState::NotPaired);
    }

    #[test]
    fn tooltips_are_in_portuguese_and_fit() {
        assert_eq!(TrayState::Online.tooltip(), "CertHub — conectado");
        assert_eq!(
            TrayState::ServerUnreachable.tooltip(),
            "CertHub — servidor inacessível"
        );
        assert_eq!(TrayState::NotPaired.tooltip(), "CertHub — não pareado");
        assert_eq!(
            TrayState::Error("falha ao instalar".into()).tooltip(),
            "CertHub — erro: falha ao instalar"
        );
        assert_eq!(TrayState::Error("  ".into()).tooltip(), "CertHub — erro");
        let long = TrayState::Error("x".repeat(500)).tooltip();
        let fitted = fit_utf16(&long, 128);
        assert_eq!(fitted.len(), 128);
        assert_eq!(fitted[126], '…' as u16);
        assert_eq!(fitted[127], 0);
    }

    #[test]
    fn each_kind_of_state_has_its_own_icon() {
        let icons: std::collections::HashSet<_> = [
            TrayState::NotPaired,
            TrayState::Online,
            TrayState::ServerUnreachable,
            TrayState::Error("e".into()),
        ]
        .iter()
        .map(TrayState::icon)
        .collect();
        assert_eq!(icons.len(), 4);
        let colours: std::collections::HashSet<_> = TrayIcon::ALL.iter().map(|i| i.rgb()).collect();
        assert_eq!(colours.len(), 4);
    }

    #[test]
    fn icon_pixels_are_a_disc() {
        let size = 16;
        let px = TrayIcon::Online.argb_pixels(size);
        assert_eq!(px.len(), 256);
        assert_eq!(px[0] >> 24, 0, "corner transparent");
        let at = |x: u32, y: u32| px[(y * size + x) as usize];
        assert_eq!(at(8, 8), 0xffff_ffff, "white centre");
        let (r, g, b) = TrayIcon::Online.rgb();
        assert_eq!(
            at(4, 8),
            0xff00_0000 | (r as u32) << 16 | (g as u32) << 8 | b as u32
        );
        // premultiplied: no channel above alpha
        for p in px {
            let a = p >> 24;
            assert!((p >> 16 & 0xff) <= a && (p >> 8 & 0xff) <= a && (p & 0xff) <= a);
        }
    }

    #[test]
    fn fit_utf16_keeps_short_text_and_surrogates_whole() {
        assert_eq!(fit_utf16("ab", 64), vec!['a' as u16, 'b' as u16, 0]);
        // 🔒 is a surrogate pair: never cut in half
        let text = format!("{}🔒🔒", "a".repeat(60));
        let fitted = fit_utf16(&text, 64);
        assert!(fitted.len() <= 64);
        let s = String::from_utf16(&fitted[..fitted.len() - 1]).expect("valid UTF-16");
        assert!(s.ends_with('…'));
    }

    #[test]
    fn menu_commands_have_labels_and_round_trip_their_ids() {
        let labels: Vec<_> = MenuCommand::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(
            labels,
            [
                "Status",
                "Abrir portal",
                "Remover certificados agora",
                "Parear dispositivo",
                "Iniciar com o Windows",
                "Sair"
            ]
        );
        for c in MenuCommand::ALL {
            assert_ne!(c.id(), 0);
            assert_eq!(MenuCommand::from_id(c.id()), Some(c));
        }
        assert_eq!(MenuCommand::from_id(0), None);
        let layout = menu_layout();
        assert_eq!(layout.iter().flatten().count(), MenuCommand::ALL.len());
        assert_eq!(layout.last(), Some(&Some(MenuCommand::Quit)));
    }

    fn sample() -> StatusView {
        StatusView {
            state: TrayState::Online,
            server: "https://certhub.exemplo.com.br".into(),
            device: Some("RECEPCAO-01 (7f3c2a10)".into()),
            last_heartbeat: Some(Local.with_ymd_and_hms(2026, 12, 2, 13, 45, 10).unwrap()),
            clock_skew: Some(TimeDelta::seconds(-3)),
            certificates: vec![
                (
                    "PADARIA PÃO QUENTE LTDA:12345678000199".into(),
                    TimeDelta::minutes(255),
                ),
                ("JOSÉ DA SILVA:12345678909".into(), TimeDelta::minutes(59)),
            ],
            log_tail: vec!["13:40:02 certificado instalado".into()],
        }
    }

    #[test]
    fn status_text_lists_everything() {
        let text = sample().to_text();
        let expected = "\
CertHub — conectado

Servidor: https://certhub.exemplo.com.br
Dispositivo: RECEPCAO-01 (7f3c2a10)
Último contato com o servidor: 02/12/2026 13:45:10
Diferença do relógio: -3 s

Certificados instalados (2):
  • PADARIA PÃO QUENTE LTDA:12345678000199 — restam 4 h 15 min
  • JOSÉ DA SILVA:12345678909 — restam 59 min

Últimas mensagens:
  13:40:02 certificado instalado
";
        assert_eq!(text, expected);
    }

    #[test]
    fn status_text_when_not_paired() {
        let view = StatusView {
            state: TrayState::NotPaired,
            server: String::new(),
            device: None,
            last_heartbeat: None,
            clock_skew: None,
            certificates: vec![],
            log_tail: vec![],
        };
        let text = view.to_text();
        assert!(text.starts_with("CertHub — não pareado\n"));
        assert!(text.contains("Servidor: (não configurado)\n"));
        assert!(text.contains("Dispositivo: (não pareado)\n"));
        assert!(text.contains("Último contato com o servidor: nunca\n"));
        assert!(text.contains("Diferença do relógio: desconhecida\n"));
        assert!(text.contains("Nenhum certificado instalado.\n"));
        assert!(!text.contains("Últimas mensagens"));
    }

    #[test]
    fn durations_are_worded() {
        assert_eq!(format_skew(TimeDelta::seconds(3)), "+3 s");
        assert_eq!(format_skew(TimeDelta::seconds(-65)), "-1 min 05 s");
        assert_eq!(format_skew(TimeDelta::minutes(125)), "+2 h 05 min");
        assert_eq!(format_time_left(TimeDelta::seconds(0)), "remoção pendente");
        assert_eq!(format_time_left(TimeDelta::seconds(-5)), "remoção pendente");
        assert_eq!(format_time_left(TimeDelta::seconds(30)), "menos de 1 min");
        assert_eq!(format_time_left(TimeDelta::seconds(61)), "restam 2 min");
        assert_eq!(format_time_left(TimeDelta::seconds(60)), "resta 1 min");
        assert_eq!(format_time_left(TimeDelta::minutes(65)), "resta 1 h 05 min");
        let mut view = sample();
        view.clock_skew = Some(TimeDelta::minutes(10));
        assert!(
            view.to_text()
                .contains("Diferença do relógio: +10 min 00 s (acerte o relógio do Windows)")
        );
    }

    #[test]
    fn crlf_for_edit_controls() {
        assert_eq!(crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
    }

    #[test]
    fn pairing_form_accepts_a_code_or_an_id_and_token() {
        let by_code =
            PairRequest::from_fields(" https://certhub.exemplo.com.br/ ", " ABC-123 ", "", "", "")
                .unwrap();
        assert_eq!(by_code.server_url, "https://certhub.exemplo.com.br");
        assert_eq!(by_code.code.as_deref(), Some("ABC-123"));
        assert_eq!(by_code.device_id, None);
        let by_token =
            PairRequest::from_fields("http://10.0.0.5:8080", "", "dev-1", "tok", "").unwrap();
        assert_eq!(by_token.device_id.as_deref(), Some("dev-1"));
        assert_eq!(by_token.device_token.as_deref(), Some("tok"));
        assert!(PairRequest::from_fields("HTTPS://[::1]:8443/x", "c", "", "", "").is_ok());
        let pin = "ab:CD:".repeat(16);
        let pinned =
            PairRequest::from_fields("https://h", "c", "", "", &pin[..pin.len() - 1]).unwrap();
        assert!(pinned.fingerprint.is_some());
        assert_eq!(
            PairRequest::from_fields("https://h", "c", "", "", "AB:CD"),
            Err(PairError::BadFingerprint)
        );
    }

    #[test]
    fn pairing_form_refusals() {
        let err = |s, c, i, t| PairRequest::from_fields(s, c, i, t, "").unwrap_err();
        assert_eq!(err("", "c", "", ""), PairError::MissingServer);
        assert_eq!(
            err("certhub.exemplo.com.br", "c", "", ""),
            PairError::BadServerUrl
        );
        assert_eq!(err("ftp://x", "c", "", ""), PairError::BadServerUrl);
        assert_eq!(err("https://", "c", "", ""), PairError::BadServerUrl);
        assert_eq!(err("https://a b", "c", "", ""), PairError::BadServerUrl);
        assert_eq!(err("https://h:porta", "c", "", ""), PairError::BadServerUrl);
        assert_eq!(err("https://h", "", "", ""), PairError::MissingCredentials);
        assert_eq!(err("https://h", "", "id", ""), PairError::IdWithoutToken);
        assert_eq!(err("https://h", "", "", "tok"), PairError::TokenWithoutId);
        assert_eq!(err("https://h", "c", "id", "tok"), PairError::CodeAndToken);
        assert_eq!(err("https://h", "c", "", "tok"), PairError::CodeAndToken);
        assert!(PairError::BadServerUrl.to_string().contains("https://"));
        let direct = PairRequest {
            server_url: "https://h".into(),
            code: Some("   ".into()),
            device_id: None,
            device_token: None,
            fingerprint: None,
        };
        assert_eq!(direct.validate(), Err(PairError::MissingCredentials));
    }

    #[test]
    fn balloons() {
        let b = installed_balloon("PADARIA PÃO QUENTE LTDA", "18:00");
        assert_eq!(b.title, "Certificado instalado");
        assert_eq!(b.text, "PADARIA PÃO QUENTE LTDA instalado até 18:00");
        let b = removed_balloon("PADARIA PÃO QUENTE LTDA");
        assert_eq!(b.title, "Certificado removido");
        assert_eq!(b.text, "PADARIA PÃO QUENTE LTDA removido deste computador");
    }
}
