//! Draws one of the agent's screens with sample data, for scripts/agent-screenshots.sh:
//! `tray_screens menu|balloon|status|pair|pair-error [seconds]`. Prints `READY` once the screen is up and exits by
//! itself after `seconds` (default 60) in case nobody ends it: the tray menu blocks its thread.

#[cfg(windows)]
fn main() {
    use std::io::Write;
    use std::time::Duration;

    use certhub::agent::tray_model::{TrayState, installed_balloon};
    use certhub::agent::windows::{tray::Tray, ui};

    let mut args = std::env::args().skip(1);
    let screen = args.next().unwrap_or_default();
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        std::process::exit(0);
    });
    let ready = || {
        println!("READY {screen}");
        let _ = std::io::stdout().flush();
    };
    match screen.as_str() {
        "menu" => {
            let tray = Tray::new(TrayState::Online).expect("tray icon");
            tray.set_start_with_windows(true);
            // SAFETY: moves the pointer, so the menu opens at a known place.
            unsafe { windows_sys::Win32::UI::WindowsAndMessaging::SetCursorPos(40, 320) };
            tray.handle().open_menu().expect("open the menu");
            ready();
            tray.run(|_| {}).expect("message loop");
        }
        "balloon" => {
            let tray = Tray::new(TrayState::Online).expect("tray icon");
            let balloon = installed_balloon("PADARIA PÃO QUENTE LTDA", "18:00");
            tray.balloon(&balloon.title, &balloon.text)
                .expect("balloon");
            ready();
            tray.run(|_| {}).expect("message loop");
        }
        "status" => {
            let window = ui::StatusWindow::open(&sample_status()).expect("status window");
            ready();
            window.wait();
        }
        "pair" => {
            let dialog =
                ui::PairDialog::open("https://certhub.escritorio.com.br").expect("pair dialog");
            dialog.fill("https://certhub.escritorio.com.br", "K7Q-4M9-2XD", "", "");
            ready();
            dialog.wait();
        }
        "pair-error" => {
            let dialog = ui::PairDialog::open("").expect("pair dialog");
            dialog.fill("certhub.escritorio.com.br", "", "7f3c2a10", "");
            dialog.press_ok();
            ready();
            dialog.wait();
        }
        other => {
            eprintln!(
                "usage: tray_screens menu|balloon|status|pair|pair-error [seconds] (got {other:?})"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(windows)]
fn sample_status() -> certhub::agent::tray_model::StatusView {
    use certhub::agent::tray_model::{StatusView, TrayState};
    use chrono::{Local, TimeDelta, TimeZone};
    StatusView {
        state: TrayState::Online,
        server: "https://certhub.escritorio.com.br".into(),
        device: Some("RECEPCAO-01 (id 7f3c2a10-5b1e-4d2c-9a8f-0e6b1c2d3e4f)".into()),
        last_heartbeat: Local.with_ymd_and_hms(2026, 12, 2, 13, 45, 10).single(),
        clock_skew: Some(TimeDelta::seconds(-2)),
        certificates: vec![
            (
                "PADARIA PÃO QUENTE LTDA:12345678000199".into(),
                TimeDelta::minutes(255),
            ),
            (
                "JOSÉ DA SILVA ARAÚJO:12345678909".into(),
                TimeDelta::minutes(59),
            ),
        ],
        log_tail: vec![
            "13:40:02 certificado PADARIA PÃO QUENTE LTDA instalado até 18:00".into(),
            "13:44:51 certificado JOSÉ DA SILVA ARAÚJO instalado até 18:00".into(),
            "13:45:10 contato com o servidor: ok".into(),
        ],
    }
}

#[cfg(not(windows))]
fn main() {
    eprintln!("tray_screens draws Windows windows: build it for x86_64-pc-windows-gnu");
    std::process::exit(2);
}
