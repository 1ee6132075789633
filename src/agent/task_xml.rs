//! The Task Scheduler definition of the daily cleanup ("CertHub Cleanup 18h"): plain text,
//! rendered and tested on any platform; `windows::task` registers it.

use chrono::NaiveTime;

/// The task's name in the Task Scheduler library.
pub const CLEANUP_TASK_NAME: &str = "CertHub Cleanup 18h";

const TEMPLATE: &str = include_str!("../../templates/cleanup-task.xml");

/// The cleanup task: every day at `at` (local time), only while the user is logged on
/// (`InteractiveToken`), run late when the computer was off or asleep at that time
/// (`StartWhenAvailable`), running `<agent_exe> cleanup --mode scheduled`.
pub fn render_cleanup_task(agent_exe: &str, at: NaiveTime) -> String {
    TEMPLATE
        .replace("{{time}}", &at.format("%H:%M:00").to_string())
        .replace("{{command}}", &xml_escape(&quote_if_spaced(agent_exe)))
}

/// The Task Scheduler splits an unquoted command at its first space.
fn quote_if_spaced(path: &str) -> String {
    if path.contains(char::is_whitespace) && !path.starts_with('"') {
        format!("\"{path}\"")
    } else {
        path.to_string()
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn runs_daily_at_the_given_time_while_the_user_is_logged_on() {
        let xml = render_cleanup_task(r"C:\CertHub\certhub-agent.exe", at(18, 0));
        assert!(xml.contains("<StartBoundary>2024-01-01T18:00:00</StartBoundary>"));
        assert!(xml.contains("<DaysInterval>1</DaysInterval>"));
        assert!(xml.contains("<LogonType>InteractiveToken</LogonType>"));
        assert!(xml.contains("<StartWhenAvailable>true</StartWhenAvailable>"));
        assert!(xml.contains(r"<Command>C:\CertHub\certhub-agent.exe</Command>"));
        assert!(xml.contains("<Arguments>cleanup --mode scheduled</Arguments>"));
        assert!(!xml.contains("{{"), "a placeholder was left: {xml}");
    }

    #[test]
    fn other_times_are_zero_padded() {
        let xml = render_cleanup_task(r"C:\a.exe", at(7, 5));
        assert!(xml.contains("T07:05:00<"));
    }

    #[test]
    fn a_path_with_spaces_is_quoted_and_escaped() {
        let xml = render_cleanup_task(r"C:\Program Files\A&B\certhub-agent.exe", at(18, 0));
        assert!(xml.contains(
            r"<Command>&quot;C:\Program Files\A&amp;B\certhub-agent.exe&quot;</Command>"
        ));
    }

    #[test]
    fn declares_utf16_as_schtasks_reads_it() {
        let xml = render_cleanup_task(r"C:\a.exe", at(18, 0));
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-16"?>"#));
        assert_eq!(xml.matches("<Task ").count(), 1);
        assert_eq!(xml.matches("</Task>").count(), 1);
    }
}
