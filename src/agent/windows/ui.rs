//! The agent's small windows: Status (a read-only text) and the pairing dialog, plus what they
//! and the tray share (window classes, the message font, the window-state pointer). Each is a
//! plain window with child controls and its own modal loop on the calling (tray) thread; the
//! texts come from `tray_model`.
//!
//! Why no crate: native-windows-gui 1.0 brings winapi 0.3, a second Win32 binding, for two windows.

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    ERROR_CLASS_ALREADY_EXISTS, HINSTANCE, HWND, LPARAM, LRESULT, RECT, WPARAM,
};
use windows_sys::Win32::Graphics::Gdi::{
    COLOR_BTNFACE, CreateFontIndirectW, DEFAULT_GUI_FONT, GetStockObject, GetSysColorBrush, HFONT,
    UpdateWindow,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::SetFocus;
use windows_sys::Win32::UI::Shell::ShellExecuteW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    BS_DEFPUSHBUTTON, BS_PUSHBUTTON, CreateWindowExW, DefWindowProcW, DestroyWindow,
    DispatchMessageW, ES_AUTOHSCROLL, ES_AUTOVSCROLL, ES_MULTILINE, ES_READONLY, GWLP_USERDATA,
    GetClientRect, GetMessageW, GetSystemMetrics, GetWindowLongPtrW, GetWindowTextLengthW,
    GetWindowTextW, IDCANCEL, IDOK, IsDialogMessageW, IsWindow, MSG, MoveWindow, NONCLIENTMETRICSW,
    PostQuitMessage, RegisterClassExW, SM_CXSCREEN, SM_CYSCREEN, SPI_GETNONCLIENTMETRICS,
    SW_SHOWNORMAL, SendMessageW, SetForegroundWindow, SetWindowLongPtrW, SetWindowTextW,
    ShowWindow, SystemParametersInfoW, TranslateMessage, WM_CLOSE, WM_COMMAND, WM_SETFONT, WM_SIZE,
    WNDCLASSEXW, WNDPROC, WS_CAPTION, WS_CHILD, WS_EX_CLIENTEDGE, WS_EX_CONTROLPARENT,
    WS_OVERLAPPED, WS_OVERLAPPEDWINDOW, WS_SYSMENU, WS_TABSTOP, WS_VISIBLE, WS_VSCROLL,
};

use super::{last_error, wide};
use crate::agent::tray_model::{PairError, PairRequest, StatusView, crlf};

/// `SS_NOPREFIX`: a static control shows "&" as is (labels hold user data such as names).
const SS_NOPREFIX: u32 = 0x80;

/// This executable's module handle, which owns our window classes.
pub(crate) fn instance() -> HINSTANCE {
    // SAFETY: NULL asks for the calling process's own module; the handle is not freed.
    unsafe { GetModuleHandleW(ptr::null()) }
}

/// `RegisterClassExW` for one of our window classes; registering it again is not an error.
pub(crate) fn register_class(name: &[u16], proc: WNDPROC) -> io::Result<()> {
    let class = WNDCLASSEXW {
        cbSize: size_of::<WNDCLASSEXW>() as u32,
        lpfnWndProc: proc,
        hInstance: instance(),
        lpszClassName: name.as_ptr(),
        // SAFETY: a system colour index; the brush is shared and never freed.
        hbrBackground: unsafe { GetSysColorBrush(COLOR_BTNFACE) },
        ..Default::default()
    };
    // SAFETY: the struct and the NUL-terminated name outlive the call (the name is copied).
    if unsafe { RegisterClassExW(&class) } == 0 && last_error() != ERROR_CLASS_ALREADY_EXISTS {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The font Windows uses in message boxes (Segoe UI on Windows, Tahoma under Wine), made once
/// and kept for the process; the stock GUI font if that fails.
pub(crate) fn message_font() -> HFONT {
    static FONT: OnceLock<usize> = OnceLock::new();
    *FONT.get_or_init(|| {
        let mut metrics = NONCLIENTMETRICSW {
            cbSize: size_of::<NONCLIENTMETRICSW>() as u32,
            ..Default::default()
        };
        // SAFETY: an out-pointer to a struct of the size given in cbSize.
        let ok = unsafe {
            SystemParametersInfoW(
                SPI_GETNONCLIENTMETRICS,
                metrics.cbSize,
                (&mut metrics as *mut NONCLIENTMETRICSW).cast(),
                0,
            )
        } != 0;
        // SAFETY: a LOGFONTW filled in above; a stock object otherwise.
        let font = if ok {
            unsafe { CreateFontIndirectW(&metrics.lfMessageFont) }
        } else {
            ptr::null_mut()
        };
        if font.is_null() {
            // SAFETY: stock objects need no freeing.
            (unsafe { GetStockObject(DEFAULT_GUI_FONT) }) as usize
        } else {
            font as usize
        }
    }) as HFONT
}

/// A child control of `parent` (`class` such as "EDIT", "STATIC", "BUTTON") in the message font.
fn child(
    parent: HWND,
    class: &str,
    text: &str,
    style: u32,
    ex_style: u32,
    id: i32,
    (x, y, w, h): (i32, i32, i32, i32),
) -> io::Result<HWND> {
    let class = wide(class);
    let text = wide(text);
    // SAFETY: NUL-terminated strings; a live parent; the id is passed as the HMENU of a child.
    let hwnd = unsafe {
        CreateWindowExW(
            ex_style,
            class.as_ptr(),
            text.as_ptr(),
            WS_CHILD | WS_VISIBLE | style,
            x,
            y,
            w,
            h,
            parent,
            id as isize as _,
            instance(),
            ptr::null(),
        )
    };
    if hwnd.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a live control and a font that lives as long as the process.
    unsafe { SendMessageW(hwnd, WM_SETFONT, message_font() as WPARAM, 1) };
    Ok(hwnd)
}

/// A top-level window of our `class`, `w`×`h` (outer size) in the centre of the screen, not yet
/// shown, whose `GWLP_USERDATA` points to `state`.
fn top_level<T>(
    class: &[u16],
    title: &str,
    style: u32,
    (w, h): (i32, i32),
    state: *const T,
) -> io::Result<HWND> {
    let title = wide(title);
    // SAFETY: no arguments.
    let (sw, sh) = unsafe { (GetSystemMetrics(SM_CXSCREEN), GetSystemMetrics(SM_CYSCREEN)) };
    // SAFETY: a registered class, NUL-terminated strings, no parent.
    let hwnd = unsafe {
        CreateWindowExW(
            WS_EX_CONTROLPARENT,
            class.as_ptr(),
            title.as_ptr(),
            style,
            ((sw - w) / 2).max(0),
            ((sh - h) / 2).max(0),
            w,
            h,
            ptr::null_mut(),
            ptr::null_mut(),
            instance(),
            ptr::null(),
        )
    };
    if hwnd.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a live window of ours; the pointer stays valid until the window is destroyed
    // (the owners clear it before freeing).
    unsafe { SetWindowLongPtrW(hwnd, GWLP_USERDATA, state as isize) };
    Ok(hwnd)
}

/// The state a window of ours keeps in `GWLP_USERDATA`, or `None` (before it is set, after
/// it is cleared).
///
/// # Safety
/// `hwnd`'s user data is null or a `*const T` that is alive.
unsafe fn state_of<'a, T>(hwnd: HWND) -> Option<&'a T> {
    // SAFETY: per the caller.
    unsafe { (GetWindowLongPtrW(hwnd, GWLP_USERDATA) as *const T).as_ref() }
}

/// The text of a window or control.
pub(crate) fn window_text(hwnd: HWND) -> String {
    // SAFETY: a window handle (a dead one gives 0) and a buffer of the length given.
    unsafe {
        let len = GetWindowTextLengthW(hwnd).max(0) as usize;
        let mut buf = vec![0u16; len + 1];
        let got = GetWindowTextW(hwnd, buf.as_mut_ptr(), buf.len() as i32).max(0) as usize;
        String::from_utf16_lossy(&buf[..got.min(len)])
    }
}

/// Sets the text of a window or control.
pub(crate) fn set_window_text(hwnd: HWND, text: &str) {
    let text = wide(text);
    // SAFETY: a NUL-terminated string that outlives the call (the control copies it).
    unsafe { SetWindowTextW(hwnd, text.as_ptr()) };
}

fn is_window(hwnd: HWND) -> bool {
    // SAFETY: any value may be asked about.
    unsafe { IsWindow(hwnd) != 0 }
}

fn show(hwnd: HWND) {
    // SAFETY: a live window of ours.
    unsafe {
        ShowWindow(hwnd, SW_SHOWNORMAL);
        UpdateWindow(hwnd);
        SetForegroundWindow(hwnd);
    }
}

/// Runs messages until `hwnd` is destroyed, with Tab/Enter/Esc handled as in a dialog. A
/// `WM_QUIT` that arrives meanwhile is posted again for the outer loop (the tray's).
fn modal_loop(hwnd: HWND) {
    while is_window(hwnd) {
        let mut msg = MSG::default();
        // SAFETY: an out-pointer to a local MSG.
        let got = unsafe { GetMessageW(&mut msg, ptr::null_mut(), 0, 0) };
        if got == 0 {
            // SAFETY: re-posts the quit for the caller's loop.
            unsafe { PostQuitMessage(msg.wParam as i32) };
            return;
        }
        if got == -1 {
            return;
        }
        // SAFETY: a message just taken from this thread's queue.
        unsafe {
            if IsDialogMessageW(hwnd, &msg) == 0 {
                TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
    }
}

fn low_word(w: WPARAM) -> i32 {
    (w & 0xffff) as i32
}

// ---------------------------------------------------------------------------------------------
// Status

const STATUS_CLASS: &str = "CertHubStatusWindow";
const STATUS_TITLE: &str = "CertHub — Status";

struct StatusState {
    edit: Cell<HWND>,
    close: Cell<HWND>,
}

/// The Status window: the [`StatusView`] text in a read-only, scrollable box and a "Fechar"
/// button. [`show_status_window`] opens one and waits for it to close.
pub struct StatusWindow {
    hwnd: HWND,
    state: Box<StatusState>,
}

impl StatusWindow {
    /// Opens and shows the window; it closes with "Fechar", Esc or its close box.
    pub fn open(view: &StatusView) -> io::Result<StatusWindow> {
        let class = wide(STATUS_CLASS);
        register_class(&class, Some(status_proc))?;
        let state = Box::new(StatusState {
            edit: Cell::new(ptr::null_mut()),
            close: Cell::new(ptr::null_mut()),
        });
        let hwnd = top_level(
            &class,
            STATUS_TITLE,
            WS_OVERLAPPEDWINDOW,
            (600, 440),
            &*state,
        )?;
        let window = StatusWindow { hwnd, state };
        let edit = child(
            hwnd,
            "EDIT",
            "",
            WS_VSCROLL | WS_TABSTOP | (ES_MULTILINE | ES_READONLY | ES_AUTOVSCROLL) as u32,
            WS_EX_CLIENTEDGE,
            100,
            (0, 0, 10, 10),
        )?;
        let close = child(
            hwnd,
            "BUTTON",
            "Fechar",
            WS_TABSTOP | BS_DEFPUSHBUTTON as u32,
            0,
            IDCANCEL,
            (0, 0, 10, 10),
        )?;
        window.state.edit.set(edit);
        window.state.close.set(close);
        set_window_text(edit, &crlf(&view.to_text()));
        layout_status(hwnd, &window.state);
        show(hwnd);
        // SAFETY: a live button of ours.
        unsafe { SetFocus(close) };
        Ok(window)
    }

    /// The text shown (with `\r\n` line ends).
    pub fn text(&self) -> String {
        window_text(self.state.edit.get())
    }

    /// Whether the window is still open.
    pub fn is_open(&self) -> bool {
        is_window(self.hwnd)
    }

    /// Runs this thread's messages until the window is closed.
    pub fn wait(&self) {
        modal_loop(self.hwnd);
    }

    /// Closes the window as "Fechar" would.
    pub fn close(&self) {
        if self.is_open() {
            // SAFETY: a live window of ours.
            unsafe { SendMessageW(self.hwnd, WM_CLOSE, 0, 0) };
        }
    }

    /// The window's handle (for screenshots and tests).
    pub fn hwnd(&self) -> HWND {
        self.hwnd
    }
}

impl Drop for StatusWindow {
    fn drop(&mut self) {
        if self.is_open() {
            // SAFETY: our window: the state pointer is cleared before the state is freed.
            unsafe {
                SetWindowLongPtrW(self.hwnd, GWLP_USERDATA, 0);
                DestroyWindow(self.hwnd);
            }
        }
    }
}

/// Shows the Status window and returns when the user closes it (runs a modal loop on this
/// thread, so call it from the tray's thread, e.g. in the `Tray::run` handler).
pub fn show_status_window(view: &StatusView) -> io::Result<()> {
    let window = StatusWindow::open(view)?;
    window.wait();
    Ok(())
}

fn layout_status(hwnd: HWND, state: &StatusState) {
    let mut rect = RECT::default();
    // SAFETY: a live window and an out-pointer to a local.
    unsafe { GetClientRect(hwnd, &mut rect) };
    let (w, h) = (rect.right, rect.bottom);
    let margin = 10;
    let (bw, bh) = (96, 28);
    // SAFETY: our live child controls.
    unsafe {
        MoveWindow(
            state.edit.get(),
            margin,
            margin,
            (w - 2 * margin).max(0),
            (h - 3 * margin - bh).max(0),
            1,
        );
        MoveWindow(
            state.close.get(),
            w - margin - bw,
            h - margin - bh,
            bw,
            bh,
            1,
        );
    }
}

unsafe extern "system" fn status_proc(hwnd: HWND, msg: u32, wp: WPARAM, lp: LPARAM) -> LRESULT {
    // SAFETY: our class's user data is null or the StatusState of a live StatusWindow.
    let state = unsafe { state_of::<StatusState>(hwnd) };
    match (msg, state) {
        (WM_SIZE, Some(state)) => {
            layout_status(hwnd, state);
            0
        }
        (WM_COMMAND, _) if matches!(low_word(wp), IDOK | IDCANCEL) => {
            // SAFETY: our own live window.
            unsafe { DestroyWindow(hwnd) };
            0
        }
        // SAFETY: the default handling (WM_CLOSE destroys the window).
        _ => unsafe { DefWindowProcW(hwnd, msg, wp, lp) },
    }
}

// ---------------------------------------------------------------------------------------------
// Pairing

const PAIR_CLASS: &str = "CertHubPairDialog";
const PAIR_TITLE: &str = "CertHub — Parear dispositivo";
const ID_SERVER: i32 = 201;
const ID_CODE: i32 = 202;
const ID_DEVICE_ID: i32 = 203;
const ID_TOKEN: i32 = 204;
const ID_ERROR: i32 = 205;
const ID_FINGERPRINT: i32 = 206;

struct PairState {
    server: Cell<HWND>,
    code: Cell<HWND>,
    device_id: Cell<HWND>,
    token: Cell<HWND>,
    fingerprint: Cell<HWND>,
    error: Cell<HWND>,
    result: RefCell<Option<PairRequest>>,
}

impl PairState {
    /// "OK": the form as a [`PairRequest`], or its error shown under the fields.
    fn submit(&self, hwnd: HWND) {
        let read = |c: &Cell<HWND>| window_text(c.get());
        match PairRequest::from_fields(
            &read(&self.server),
            &read(&self.code),
            &read(&self.device_id),
            &read(&self.token),
            &read(&self.fingerprint),
        ) {
            Ok(request) => {
                *self.result.borrow_mut() = Some(request);
                // SAFETY: our own live window.
                unsafe { DestroyWindow(hwnd) };
            }
            Err(error) => {
                set_window_text(self.error.get(), &error.to_string());
                let field = match error {
                    PairError::MissingServer | PairError::BadServerUrl => &self.server,
                    PairError::MissingCredentials | PairError::CodeAndToken => &self.code,
                    PairError::IdWithoutToken => &self.token,
                    PairError::TokenWithoutId => &self.device_id,
                    PairError::BadFingerprint => &self.fingerprint,
                };
                // SAFETY: a live edit control of ours.
                unsafe { SetFocus(field.get()) };
            }
        }
    }
}

/// The pairing dialog: "Servidor", then "Código de pareamento" or "ID do dispositivo" and
/// "Token", with OK and Cancelar. OK only closes it with a valid form (the error is shown in
/// the dialog otherwise). [`show_pair_dialog`] opens one and waits for the answer.
pub struct PairDialog {
    hwnd: HWND,
    state: Box<PairState>,
}

impl PairDialog {
    /// Opens and shows the dialog, "Servidor" filled with `server` (e.g. the configured one).
    pub fn open(server: &str) -> io::Result<PairDialog> {
        let class = wide(PAIR_CLASS);
        register_class(&class, Some(pair_proc))?;
        let state = Box::new(PairState {
            server: Cell::new(ptr::null_mut()),
            code: Cell::new(ptr::null_mut()),
            device_id: Cell::new(ptr::null_mut()),
            token: Cell::new(ptr::null_mut()),
            fingerprint: Cell::new(ptr::null_mut()),
            error: Cell::new(ptr::null_mut()),
            result: RefCell::new(None),
        });
        let hwnd = top_level(
            &class,
            PAIR_TITLE,
            WS_OVERLAPPED | WS_CAPTION | WS_SYSMENU,
            (500, 440),
            &*state,
        )?;
        let dialog = PairDialog { hwnd, state };
        let (margin, label_w, row_h, gap) = (14, 150, 24, 10);
        let field_x = margin + label_w + 8;
        let field_w = 500 - 16 - field_x - margin;
        let full_w = 500 - 16 - 2 * margin;
        let label = |text: &str, y: i32, w: i32, h: i32| {
            child(hwnd, "STATIC", text, SS_NOPREFIX, 0, -1, (margin, y, w, h))
        };
        let field = |id: i32, text: &str, y: i32| {
            child(
                hwnd,
                "EDIT",
                text,
                WS_TABSTOP | ES_AUTOHSCROLL as u32,
                WS_EX_CLIENTEDGE,
                id,
                (field_x, y, field_w, row_h),
            )
        };
        let mut y = margin;
        label(
            "Informe o endereço do servidor e o código de pareamento mostrado no portal.",
            y,
            full_w,
            36,
        )?;
        y += 36 + gap;
        label("Servidor", y + 4, label_w, row_h)?;
        dialog.state.server.set(field(ID_SERVER, server, y)?);
        y += row_h + gap;
        label("Código de pareamento", y + 4, label_w, row_h)?;
        dialog.state.code.set(field(ID_CODE, "", y)?);
        y += row_h + gap + 6;
        label(
            "Ou, se o portal mostrou um ID e um token:",
            y,
            full_w,
            row_h - 4,
        )?;
        y += row_h + 2;
        label("ID do dispositivo", y + 4, label_w, row_h)?;
        dialog.state.device_id.set(field(ID_DEVICE_ID, "", y)?);
        y += row_h + gap;
        label("Token", y + 4, label_w, row_h)?;
        dialog.state.token.set(field(ID_TOKEN, "", y)?);
        y += row_h + gap + 6;
        label(
            "Certificado do servidor (SHA-256, em Dispositivos no portal; em branco se o Windows já confia nele):",
            y,
            full_w,
            30,
        )?;
        y += 32;
        label("Impressão digital", y + 4, label_w, row_h)?;
        dialog.state.fingerprint.set(field(ID_FINGERPRINT, "", y)?);
        y += row_h + gap;
        dialog.state.error.set(child(
            hwnd,
            "STATIC",
            "",
            SS_NOPREFIX,
            0,
            ID_ERROR,
            (margin, y, full_w, 36),
        )?);
        y += 36 + gap;
        let (bw, bh) = (96, 28);
        let right = 500 - 16 - margin;
        child(
            hwnd,
            "BUTTON",
            "OK",
            WS_TABSTOP | BS_DEFPUSHBUTTON as u32,
            0,
            IDOK,
            (right - 2 * bw - 8, y, bw, bh),
        )?;
        child(
            hwnd,
            "BUTTON",
            "Cancelar",
            WS_TABSTOP | BS_PUSHBUTTON as u32,
            0,
            IDCANCEL,
            (right - bw, y, bw, bh),
        )?;
        show(hwnd);
        let first = if server.trim().is_empty() {
            dialog.state.server.get()
        } else {
            dialog.state.code.get()
        };
        // SAFETY: a live edit control of ours.
        unsafe { SetFocus(first) };
        Ok(dialog)
    }

    /// Types the certificate fingerprint (tests and screenshots).
    pub fn fill_fingerprint(&self, fingerprint: &str) {
        set_window_text(self.state.fingerprint.get(), fingerprint);
    }

    /// Types into the four fields (tests and screenshots).
    pub fn fill(&self, server: &str, code: &str, device_id: &str, token: &str) {
        set_window_text(self.state.server.get(), server);
        set_window_text(self.state.code.get(), code);
        set_window_text(self.state.device_id.get(), device_id);
        set_window_text(self.state.token.get(), token);
    }

    /// Presses OK.
    pub fn press_ok(&self) {
        if self.is_open() {
            // SAFETY: a live window of ours; WM_COMMAND with IDOK as from the button.
            unsafe { SendMessageW(self.hwnd, WM_COMMAND, IDOK as WPARAM, 0) };
        }
    }

    /// Presses Cancelar.
    pub fn press_cancel(&self) {
        if self.is_open() {
            // SAFETY: as in press_ok.
            unsafe { SendMessageW(self.hwnd, WM_COMMAND, IDCANCEL as WPARAM, 0) };
        }
    }

    /// The validation message shown under the fields ("" when none).
    pub fn error_text(&self) -> String {
        if self.is_open() {
            window_text(self.state.error.get())
        } else {
            String::new()
        }
    }

    /// Whether the dialog is still open.
    pub fn is_open(&self) -> bool {
        is_window(self.hwnd)
    }

    /// The answer once closed: `Some` after a valid OK, `None` after Cancelar or closing.
    pub fn result(&self) -> Option<PairRequest> {
        self.state.result.borrow().clone()
    }

    /// Runs this thread's messages until the dialog closes; then its [`result`](Self::result).
    pub fn wait(&self) -> Option<PairRequest> {
        modal_loop(self.hwnd);
        self.result()
    }

    /// The window's handle (for screenshots and tests).
    pub fn hwnd(&self) -> HWND {
        self.hwnd
    }
}

impl Drop for PairDialog {
    fn drop(&mut self) {
        if self.is_open() {
            // SAFETY: as for StatusWindow.
            unsafe {
                SetWindowLongPtrW(self.hwnd, GWLP_USERDATA, 0);
                DestroyWindow(self.hwnd);
            }
        }
    }
}

/// Shows the pairing dialog ("Servidor" prefilled with `server`, may be empty) and returns the
/// validated request, or `None` if the user cancelled. Modal on this thread, like
/// [`show_status_window`].
pub fn show_pair_dialog(server: &str) -> io::Result<Option<PairRequest>> {
    let dialog = PairDialog::open(server)?;
    Ok(dialog.wait())
}

unsafe extern "system" fn pair_proc(hwnd: HWND, msg: u32, wp: WPARAM, lp: LPARAM) -> LRESULT {
    // SAFETY: our class's user data is null or the PairState of a live PairDialog.
    let state = unsafe { state_of::<PairState>(hwnd) };
    match (msg, state) {
        (WM_COMMAND, Some(state)) if low_word(wp) == IDOK => {
            state.submit(hwnd);
            0
        }
        (WM_COMMAND, _) if low_word(wp) == IDCANCEL => {
            // SAFETY: our own live window.
            unsafe { DestroyWindow(hwnd) };
            0
        }
        // SAFETY: the default handling (WM_CLOSE destroys the window).
        _ => unsafe { DefWindowProcW(hwnd, msg, wp, lp) },
    }
}

// ---------------------------------------------------------------------------------------------
// Portal

/// Opens `url` in the user's browser (`ShellExecuteW "open"`), for "Abrir portal".
pub fn open_in_browser(url: &str) -> io::Result<()> {
    let verb = wide("open");
    let file = wide(url);
    // SAFETY: NUL-terminated strings; no parent window.
    let result = unsafe {
        ShellExecuteW(
            ptr::null_mut(),
            verb.as_ptr(),
            file.as_ptr(),
            ptr::null(),
            ptr::null(),
            SW_SHOWNORMAL,
        )
    };
    // ShellExecuteW returns a value above 32 on success.
    if result as isize <= 32 {
        return Err(io::Error::other(format!(
            "ShellExecuteW({url}) failed with {}",
            result as isize
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tray_model::TrayState;

    fn display() -> bool {
        super::super::test_support::has_display("window")
    }

    fn sample() -> StatusView {
        StatusView {
            state: TrayState::Online,
            server: "https://certhub.exemplo.com.br".into(),
            device: Some("RECEPCAO-01".into()),
            last_heartbeat: None,
            clock_skew: None,
            certificates: vec![("EMPRESA X".into(), chrono::TimeDelta::minutes(90))],
            log_tail: vec!["linha 1".into(), "linha 2".into()],
        }
    }

    #[test]
    fn status_window_shows_the_view_text() {
        if !display() {
            return;
        }
        let view = sample();
        let window = StatusWindow::open(&view).expect("status window");
        assert!(window.is_open());
        assert_eq!(window.text(), crlf(&view.to_text()));
        assert_eq!(window_text(window.hwnd()), STATUS_TITLE);
        window.close();
        assert!(!window.is_open());
    }

    #[test]
    fn pair_dialog_keeps_an_invalid_form_open_and_returns_a_valid_one() {
        if !display() {
            return;
        }
        let dialog = PairDialog::open("https://certhub.exemplo.com.br").expect("pair dialog");
        dialog.press_ok();
        assert!(dialog.is_open());
        assert_eq!(
            dialog.error_text(),
            PairError::MissingCredentials.to_string()
        );
        dialog.fill("certhub.exemplo.com.br", "ABC-123", "", "");
        dialog.press_ok();
        assert_eq!(dialog.error_text(), PairError::BadServerUrl.to_string());
        // SAFETY: no arguments.
        let focus = unsafe { windows_sys::Win32::UI::Input::KeyboardAndMouse::GetFocus() };
        assert_eq!(
            focus,
            dialog.state.server.get(),
            "the field in error has the focus"
        );
        dialog.fill("https://certhub.exemplo.com.br", "", "dev-1", "tok-ção");
        dialog.fill_fingerprint("AB:CD");
        dialog.press_ok();
        assert_eq!(dialog.error_text(), PairError::BadFingerprint.to_string());
        dialog.fill_fingerprint("");
        dialog.press_ok();
        assert!(!dialog.is_open());
        let request = dialog.result().expect("a request");
        assert_eq!(request.device_id.as_deref(), Some("dev-1"));
        assert_eq!(request.device_token.as_deref(), Some("tok-ção"));
        assert_eq!(request.code, None);
    }

    #[test]
    fn pair_dialog_cancel_returns_none() {
        if !display() {
            return;
        }
        let dialog = PairDialog::open("").expect("pair dialog");
        dialog.fill("https://h", "ABC", "", "");
        dialog.press_cancel();
        assert!(!dialog.is_open());
        assert_eq!(dialog.wait(), None);
    }
}
