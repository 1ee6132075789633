//! The notification-area (tray) icon: a hidden window that owns the icon, a context menu and a
//! message loop that hands the chosen [`MenuCommand`]s to the agent. Other threads talk to it
//! through a [`TrayHandle`], which queues an update and posts a `WM_APP` message to the window.
//!
//! The window is a hidden top-level window rather than a message-only one: only top-level
//! windows get the `TaskbarCreated` broadcast (Explorer restarted, the icon must be added
//! again), and `SetForegroundWindow` before `TrackPopupMenu` (so the menu closes when the user
//! clicks elsewhere) needs one.
//!
//! Why no crate: tray-icon 0.26 adds ~250 KB (muda, a menu channel) and ui.rs is Win32 anyway.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::{
    BI_RGB, BITMAPINFO, BITMAPINFOHEADER, CreateBitmap, CreateDIBSection, DIB_RGB_COLORS,
    DeleteObject,
};
use windows_sys::Win32::UI::Shell::{
    NIF_ICON, NIF_INFO, NIF_MESSAGE, NIF_TIP, NIIF_INFO, NIM_ADD, NIM_DELETE, NIM_MODIFY,
    NOTIFYICONDATAW, Shell_NotifyIconW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    AppendMenuW, CreatePopupMenu, CreateWindowExW, DefWindowProcW, DestroyIcon, DestroyMenu,
    DestroyWindow, DispatchMessageW, GWLP_USERDATA, GetCursorPos, GetMessageW, GetSystemMetrics,
    GetWindowLongPtrW, HICON, ICONINFO, IDI_ERROR, IDI_INFORMATION, IDI_WARNING, LoadIconW,
    MF_CHECKED, MF_SEPARATOR, MF_STRING, MSG, PostMessageW, RegisterWindowMessageW, SM_CXSMICON,
    SetForegroundWindow, SetMenuDefaultItem, SetWindowLongPtrW, TPM_BOTTOMALIGN, TPM_NONOTIFY,
    TPM_RETURNCMD, TPM_RIGHTBUTTON, TrackPopupMenu, TranslateMessage, WM_APP, WM_CONTEXTMENU,
    WM_LBUTTONDBLCLK, WM_NULL, WM_RBUTTONUP, WS_EX_TOOLWINDOW, WS_OVERLAPPED,
};

use super::ui::{instance, register_class};
use super::wide;
use crate::agent::tray_model::{
    APP_NAME, Balloon, MenuCommand, TrayIcon, TrayState, fit_utf16, menu_layout,
};

/// The shell's notifications about our icon (clicks), as `uCallbackMessage`.
const WM_TRAY_CALLBACK: u32 = WM_APP + 1;
/// "The update queue has something": posted by [`TrayHandle`].
const WM_TRAY_UPDATE: u32 = WM_APP + 2;
/// Our only icon's id.
const ICON_ID: u32 = 1;
const CLASS: &str = "CertHubTrayWindow";
/// How long a balloon stays (Windows clamps it; from Vista on the system setting decides).
const BALLOON_TIMEOUT_MS: u32 = 10_000;

/// What another thread can ask of the tray.
#[derive(Debug, Clone, PartialEq)]
enum Update {
    State(TrayState),
    Balloon(Balloon),
    StartWithWindows(bool),
    OpenMenu,
    Quit,
}

/// Shared by the tray and its handles.
#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Update>>,
    closed: AtomicBool,
}

/// A `Send + Clone` way for any thread (the job loop) to change the tray: each call queues the
/// update and wakes the tray's loop, which applies it on the tray's thread. Calls after the
/// tray is gone return an error and do nothing.
#[derive(Debug, Clone)]
pub struct TrayHandle {
    /// The tray window's handle as an integer (HWND is a raw pointer, not `Send`).
    hwnd: usize,
    shared: Arc<Shared>,
}

impl TrayHandle {
    /// New tooltip and icon.
    pub fn set_state(&self, state: TrayState) -> io::Result<()> {
        self.post(Update::State(state))
    }

    /// A balloon notification (info icon).
    pub fn balloon(&self, title: &str, text: &str) -> io::Result<()> {
        self.post(Update::Balloon(Balloon {
            title: title.into(),
            text: text.into(),
        }))
    }

    /// A balloon from `tray_model` (`installed_balloon`, `removed_balloon`).
    pub fn show_balloon(&self, balloon: &Balloon) -> io::Result<()> {
        self.post(Update::Balloon(balloon.clone()))
    }

    /// Checks or unchecks "Iniciar com o Windows" in the menu.
    pub fn set_start_with_windows(&self, on: bool) -> io::Result<()> {
        self.post(Update::StartWithWindows(on))
    }

    /// Opens the context menu at the mouse pointer, as a right click on the icon would.
    pub fn open_menu(&self) -> io::Result<()> {
        self.post(Update::OpenMenu)
    }

    /// Ends [`Tray::run`].
    pub fn quit(&self) -> io::Result<()> {
        self.post(Update::Quit)
    }

    fn post(&self, update: Update) -> io::Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the tray is closed",
            ));
        }
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(update);
        // SAFETY: posting to a window handle is safe even if the window is gone (it fails).
        if unsafe { PostMessageW(self.hwnd as HWND, WM_TRAY_UPDATE, 0, 0) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The icons, one per [`TrayIcon`]: coloured discs drawn at the small-icon size, or the stock
/// icons if drawing fails.
struct Icons {
    icons: Vec<(TrayIcon, HICON, bool)>,
}

impl Icons {
    fn new() -> Icons {
        // SAFETY: no arguments.
        let size = unsafe { GetSystemMetrics(SM_CXSMICON) }.clamp(16, 64) as u32;
        let icons = TrayIcon::ALL
            .into_iter()
            .map(|kind| match disc_icon(kind, size) {
                Some(icon) => (kind, icon, true),
                None => (kind, stock_icon(kind), false),
            })
            .collect();
        Icons { icons }
    }

    fn get(&self, kind: TrayIcon) -> HICON {
        self.icons
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, icon, _)| *icon)
            .unwrap_or(ptr::null_mut())
    }
}

impl Drop for Icons {
    fn drop(&mut self) {
        for (_, icon, made) in &self.icons {
            if *made {
                // SAFETY: made by CreateIconIndirect, destroyed once; stock icons are skipped.
                unsafe { DestroyIcon(*icon) };
            }
        }
    }
}

/// A stock icon that still tells the states apart.
fn stock_icon(kind: TrayIcon) -> HICON {
    let id = match kind {
        TrayIcon::NotPaired => IDI_INFORMATION,
        TrayIcon::Online => windows_sys::Win32::UI::WindowsAndMessaging::IDI_APPLICATION,
        TrayIcon::Warning => IDI_WARNING,
        TrayIcon::Error => IDI_ERROR,
    };
    // SAFETY: a predefined icon id; shared icons need no freeing.
    unsafe { LoadIconW(ptr::null_mut(), id) }
}

/// `CreateIconIndirect` from `TrayIcon::argb_pixels`: a 32-bit top-down DIB with alpha and an
/// empty mask.
fn disc_icon(kind: TrayIcon, size: u32) -> Option<HICON> {
    let pixels = kind.argb_pixels(size);
    let header = BITMAPINFOHEADER {
        biSize: size_of::<BITMAPINFOHEADER>() as u32,
        biWidth: size as i32,
        biHeight: -(size as i32), // top-down
        biPlanes: 1,
        biBitCount: 32,
        biCompression: BI_RGB,
        ..Default::default()
    };
    let info = BITMAPINFO {
        bmiHeader: header,
        ..Default::default()
    };
    let mut bits: *mut core::ffi::c_void = ptr::null_mut();
    // SAFETY: a valid BITMAPINFO; no DC is needed for DIB_RGB_COLORS; the bits are written
    // within size*size u32s; both bitmaps are freed after CreateIconIndirect copied them.
    unsafe {
        let color = CreateDIBSection(
            ptr::null_mut(),
            &info,
            DIB_RGB_COLORS,
            &mut bits,
            ptr::null_mut(),
            0,
        );
        if color.is_null() || bits.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(pixels.as_ptr(), bits.cast::<u32>(), pixels.len());
        let mask_bytes = vec![0u8; (size.div_ceil(16) * 2 * size) as usize];
        let mask = CreateBitmap(size as i32, size as i32, 1, 1, mask_bytes.as_ptr().cast());
        let icon_info = ICONINFO {
            fIcon: 1,
            xHotspot: 0,
            yHotspot: 0,
            hbmMask: mask,
            hbmColor: color,
        };
        let icon = if mask.is_null() {
            ptr::null_mut()
        } else {
            windows_sys::Win32::UI::WindowsAndMessaging::CreateIconIndirect(&icon_info)
        };
        DeleteObject(color);
        if !mask.is_null() {
            DeleteObject(mask);
        }
        (!icon.is_null()).then_some(icon)
    }
}

/// What the window procedure and the loop share, on the tray's thread only.
struct Inner {
    hwnd: Cell<HWND>,
    state: RefCell<TrayState>,
    start_with_windows: Cell<bool>,
    commands: RefCell<VecDeque<MenuCommand>>,
    quit: Cell<bool>,
    icons: Icons,
    taskbar_created: u32,
    shared: Arc<Shared>,
}

impl Inner {
    fn notify_data(&self) -> NOTIFYICONDATAW {
        NOTIFYICONDATAW {
            cbSize: size_of::<NOTIFYICONDATAW>() as u32,
            hWnd: self.hwnd.get(),
            uID: ICON_ID,
            ..Default::default()
        }
    }

    /// `Shell_NotifyIconW(NIM_ADD)` with the current icon and tooltip.
    fn add_icon(&self) -> io::Result<()> {
        let mut data = self.notify_data();
        data.uFlags = NIF_MESSAGE | NIF_ICON | NIF_TIP;
        data.uCallbackMessage = WM_TRAY_CALLBACK;
        self.fill_icon_and_tip(&mut data);
        notify(NIM_ADD, &data)
    }

    fn fill_icon_and_tip(&self, data: &mut NOTIFYICONDATAW) {
        let state = self.state.borrow();
        data.hIcon = self.icons.get(state.icon());
        copy_into(&mut data.szTip, &state.tooltip());
    }

    fn apply_state(&self, state: TrayState) -> io::Result<()> {
        *self.state.borrow_mut() = state;
        let mut data = self.notify_data();
        data.uFlags = NIF_ICON | NIF_TIP;
        self.fill_icon_and_tip(&mut data);
        notify(NIM_MODIFY, &data)
    }

    fn show_balloon(&self, title: &str, text: &str) -> io::Result<()> {
        let mut data = self.notify_data();
        data.uFlags = NIF_INFO;
        data.dwInfoFlags = NIIF_INFO;
        data.Anonymous.uTimeout = BALLOON_TIMEOUT_MS;
        copy_into(&mut data.szInfoTitle, title);
        copy_into(&mut data.szInfo, text);
        notify(NIM_MODIFY, &data)
    }

    /// Applies what the handles queued. Errors are dropped: a failed tooltip update must not
    /// stop the loop (the next update retries).
    fn drain_updates(&self) {
        loop {
            let next = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(update) = next else { break };
            match update {
                Update::State(state) => drop(self.apply_state(state)),
                Update::Balloon(b) => drop(self.show_balloon(&b.title, &b.text)),
                Update::StartWithWindows(on) => self.start_with_windows.set(on),
                Update::OpenMenu => self.menu_at_cursor(),
                Update::Quit => self.quit.set(true),
            }
        }
    }

    /// Shows the context menu at the pointer and queues the command chosen, if any.
    fn menu_at_cursor(&self) {
        if let Some(command) = track_menu(self.hwnd.get(), self.start_with_windows.get()) {
            self.commands.borrow_mut().push_back(command);
        }
    }
}

/// `text` into a fixed NUL-terminated buffer, cut to fit.
fn copy_into(buffer: &mut [u16], text: &str) {
    let units = fit_utf16(text, buffer.len());
    buffer[..units.len()].copy_from_slice(&units);
}

fn notify(message: u32, data: &NOTIFYICONDATAW) -> io::Result<()> {
    // SAFETY: a filled NOTIFYICONDATAW with its cbSize.
    if unsafe { Shell_NotifyIconW(message, data) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Builds the menu from `menu_layout`, shows it at the pointer (blocking until it closes) and
/// returns the command chosen.
fn track_menu(hwnd: HWND, start_with_windows: bool) -> Option<MenuCommand> {
    // SAFETY: a menu we create, fill with NUL-terminated labels (copied by AppendMenuW) and
    // destroy; a live owner window; an out-pointer to a local POINT.
    unsafe {
        let menu = CreatePopupMenu();
        if menu.is_null() {
            return None;
        }
        for item in menu_layout() {
            match item {
                None => {
                    AppendMenuW(menu, MF_SEPARATOR, 0, ptr::null());
                }
                Some(command) => {
                    let label = wide(command.label());
                    let checked =
                        command == MenuCommand::ToggleStartWithWindows && start_with_windows;
                    let flags = MF_STRING | if checked { MF_CHECKED } else { 0 };
                    AppendMenuW(menu, flags, command.id() as usize, label.as_ptr());
                }
            }
        }
        SetMenuDefaultItem(menu, MenuCommand::Status.id(), 0);
        let mut at = POINT::default();
        GetCursorPos(&mut at);
        // Without this the menu would not close when the user clicks elsewhere (KB135788).
        SetForegroundWindow(hwnd);
        let chosen = TrackPopupMenu(
            menu,
            TPM_RETURNCMD | TPM_RIGHTBUTTON | TPM_BOTTOMALIGN | TPM_NONOTIFY,
            at.x,
            at.y,
            0,
            hwnd,
            ptr::null(),
        );
        PostMessageW(hwnd, WM_NULL, 0, 0);
        DestroyMenu(menu);
        MenuCommand::from_id(chosen as u32)
    }
}

/// The tray icon and its hidden window. Lives on one thread (the UI thread), which must run
/// [`Tray::run`]; other threads use [`Tray::handle`]. Dropping it removes the icon.
pub struct Tray {
    inner: Box<Inner>,
}

impl Tray {
    /// Creates the hidden window and adds the icon with `state`'s icon and tooltip. Fails when
    /// the shell refuses the icon (no desktop: under Wine without a display it is os error
    /// 1400; at logon before Explorer is up, retry later).
    pub fn new(state: TrayState) -> io::Result<Tray> {
        let class = wide(CLASS);
        register_class(&class, Some(tray_proc))?;
        let taskbar_created = wide("TaskbarCreated");
        let inner = Box::new(Inner {
            hwnd: Cell::new(ptr::null_mut()),
            state: RefCell::new(state),
            start_with_windows: Cell::new(false),
            commands: RefCell::new(VecDeque::new()),
            quit: Cell::new(false),
            icons: Icons::new(),
            // SAFETY: a NUL-terminated name.
            taskbar_created: unsafe { RegisterWindowMessageW(taskbar_created.as_ptr()) },
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                closed: AtomicBool::new(false),
            }),
        });
        let title = wide(APP_NAME);
        // SAFETY: a registered class and NUL-terminated strings; never shown.
        let hwnd = unsafe {
            CreateWindowExW(
                WS_EX_TOOLWINDOW,
                class.as_ptr(),
                title.as_ptr(),
                WS_OVERLAPPED,
                0,
                0,
                0,
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                instance(),
                ptr::null(),
            )
        };
        if hwnd.is_null() {
            return Err(io::Error::last_os_error());
        }
        inner.hwnd.set(hwnd);
        // SAFETY: our live window; the pointer is cleared in Drop before the Box is freed.
        unsafe { SetWindowLongPtrW(hwnd, GWLP_USERDATA, &*inner as *const Inner as isize) };
        let tray = Tray { inner };
        tray.inner.add_icon()?;
        Ok(tray)
    }

    /// [`Tray::new`], tried `attempts` times `pause` apart: at logon the agent (Run key) may
    /// start before the taskbar accepts icons. Returns the last error.
    pub fn new_retrying(
        state: TrayState,
        attempts: u32,
        pause: std::time::Duration,
    ) -> io::Result<Tray> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Tray::new(state.clone()) {
                Ok(tray) => return Ok(tray),
                Err(error) if tries >= attempts.max(1) => return Err(error),
                Err(_) => std::thread::sleep(pause),
            }
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> TrayHandle {
        TrayHandle {
            hwnd: self.inner.hwnd.get() as usize,
            shared: self.inner.shared.clone(),
        }
    }

    /// The state shown.
    pub fn state(&self) -> TrayState {
        self.inner.state.borrow().clone()
    }

    /// New tooltip and icon (on the tray's thread; other threads use the handle).
    pub fn set_state(&self, state: TrayState) -> io::Result<()> {
        self.inner.apply_state(state)
    }

    /// A balloon notification with the info icon.
    pub fn balloon(&self, title: &str, text: &str) -> io::Result<()> {
        self.inner.show_balloon(title, text)
    }

    /// Whether "Iniciar com o Windows" is shown checked.
    pub fn set_start_with_windows(&self, on: bool) {
        self.inner.start_with_windows.set(on);
    }

    pub fn start_with_windows(&self) -> bool {
        self.inner.start_with_windows.get()
    }

    /// The tray window's handle (for screenshots and tests).
    pub fn hwnd(&self) -> HWND {
        self.inner.hwnd.get()
    }

    /// Runs the thread's message loop, calling `handler` with each menu choice (a double
    /// click on the icon is [`MenuCommand::Status`]). Returns after the handler has seen
    /// [`MenuCommand::Quit`], after [`TrayHandle::quit`], or on `WM_QUIT`. The handler runs
    /// on this thread and may open [`super::ui`] windows (their loops keep the tray alive);
    /// "Iniciar com o Windows" is not toggled by itself: the handler decides and calls
    /// [`Tray::set_start_with_windows`] or [`TrayHandle::set_start_with_windows`].
    pub fn run(&self, mut handler: impl FnMut(MenuCommand)) -> io::Result<()> {
        loop {
            while let Some(command) = self.next_command() {
                handler(command);
                if command == MenuCommand::Quit {
                    return Ok(());
                }
            }
            if self.inner.quit.get() {
                self.inner.quit.set(false);
                return Ok(());
            }
            let mut msg = MSG::default();
            // SAFETY: an out-pointer to a local MSG.
            match unsafe { GetMessageW(&mut msg, ptr::null_mut(), 0, 0) } {
                0 => return Ok(()),
                -1 => return Err(io::Error::last_os_error()),
                // SAFETY: a message just taken from this thread's queue.
                _ => unsafe {
                    TranslateMessage(&msg);
                    DispatchMessageW(&msg);
                },
            }
        }
    }

    fn next_command(&self) -> Option<MenuCommand> {
        self.inner.commands.borrow_mut().pop_front()
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        self.inner.shared.closed.store(true, Ordering::Release);
        let hwnd = self.inner.hwnd.get();
        let _ = notify(NIM_DELETE, &self.inner.notify_data());
        // SAFETY: our window: its pointer to `inner` is cleared before `inner` is freed.
        unsafe {
            SetWindowLongPtrW(hwnd, GWLP_USERDATA, 0);
            DestroyWindow(hwnd);
        }
    }
}

unsafe extern "system" fn tray_proc(hwnd: HWND, msg: u32, wp: WPARAM, lp: LPARAM) -> LRESULT {
    // SAFETY: our class's user data is null or the Inner of a live Tray on this thread.
    let inner = unsafe { (GetWindowLongPtrW(hwnd, GWLP_USERDATA) as *const Inner).as_ref() };
    if let Some(inner) = inner {
        match msg {
            WM_TRAY_CALLBACK => {
                // Without NOTIFYICON_VERSION_4 the mouse message is the whole lParam.
                match lp as u32 & 0xffff {
                    WM_RBUTTONUP | WM_CONTEXTMENU => inner.menu_at_cursor(),
                    WM_LBUTTONDBLCLK => inner.commands.borrow_mut().push_back(MenuCommand::Status),
                    _ => {}
                }
                return 0;
            }
            WM_TRAY_UPDATE => {
                inner.drain_updates();
                return 0;
            }
            m if m == inner.taskbar_created && m != 0 => {
                // Explorer restarted: our icon is gone.
                let _ = inner.add_icon();
                return 0;
            }
            _ => {}
        }
    }
    // SAFETY: the default handling.
    unsafe { DefWindowProcW(hwnd, msg, wp, lp) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tray_model::installed_balloon;

    fn display() -> bool {
        super::super::test_support::has_display("tray")
    }

    #[test]
    fn tray_applies_updates_from_another_thread_then_quits() {
        if !display() {
            return;
        }
        let tray = Tray::new(TrayState::NotPaired).expect("tray icon");
        tray.set_state(TrayState::Online).unwrap();
        tray.balloon("Teste", "balão").unwrap();
        let handle = tray.handle();
        let worker = std::thread::spawn(move || {
            handle.set_state(TrayState::ServerUnreachable).unwrap();
            handle.set_start_with_windows(true).unwrap();
            handle
                .show_balloon(&installed_balloon("EMPRESA X", "18:00"))
                .unwrap();
            handle.quit().unwrap();
            handle
        });
        let mut seen = Vec::new();
        tray.run(|c| seen.push(c)).unwrap();
        let handle = worker.join().unwrap();
        assert!(seen.is_empty());
        assert_eq!(tray.state(), TrayState::ServerUnreachable);
        assert!(tray.start_with_windows());
        drop(tray);
        assert_eq!(
            handle.set_state(TrayState::Online).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
    }

    #[test]
    fn double_click_is_status_and_long_tooltips_are_cut() {
        if !display() {
            return;
        }
        let tray = Tray::new(TrayState::Error("x".repeat(400))).expect("tray icon");
        // SAFETY: our live window; the message the shell sends for a double click.
        unsafe {
            PostMessageW(
                tray.hwnd(),
                WM_TRAY_CALLBACK,
                ICON_ID as WPARAM,
                WM_LBUTTONDBLCLK as LPARAM,
            )
        };
        tray.handle().quit().unwrap();
        let mut seen = Vec::new();
        tray.run(|c| seen.push(c)).unwrap();
        assert_eq!(seen, [MenuCommand::Status]);
    }

    #[test]
    fn retrying_gives_up_with_the_last_error_or_returns_the_tray() {
        let started = std::time::Instant::now();
        let result = Tray::new_retrying(TrayState::Online, 2, std::time::Duration::from_millis(50));
        if std::env::var_os("DISPLAY").is_none() && super::super::test_support::is_wine() {
            assert!(result.is_err(), "no desktop: no icon");
            assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        } else {
            assert!(result.is_ok());
        }
    }

    #[test]
    fn every_state_has_an_icon() {
        // drawing icons needs no desktop
        let icons = Icons::new();
        for kind in TrayIcon::ALL {
            assert!(!icons.get(kind).is_null(), "{kind:?}");
        }
        assert!(
            icons.icons.iter().all(|(_, _, made)| *made),
            "drawn discs, not stock icons"
        );
    }
}
