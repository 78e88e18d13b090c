//! Letting the job worker finish behind the host when the plugin is destroyed: a host destroying an instance
//! (closing a project, removing the plugin, quitting) must not wait for a running job. The worker is told to shut
//! down, which cancels its job within one engine layer; if it has not ended after a short grace, it is detached
//! and ends on its own. A detached thread still runs this library's code, so before detaching, the library is
//! pinned in memory (never unloaded by the host's `dlclose` or `FreeLibrary`), as a library whose threads outlive it
//! must be.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the host waits at most for a worker that is between jobs or stops at once.
const GRACE: Duration = Duration::from_millis(50);

/// Joins `worker` if it ends within [`GRACE`], else pins the library and detaches it. Returns whether it was
/// detached.
pub fn finish_behind(worker: JoinHandle<()>) -> bool {
    let deadline = Instant::now() + GRACE;
    while !worker.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if worker.is_finished() || !pin_library() {
        let _ = worker.join();
        return false;
    }
    true
}

/// Keeps the shared library holding this code loaded until the process ends (`RTLD_NODELETE`); false where that
/// cannot be done, and the caller must wait instead.
#[cfg(unix)]
fn pin_library() -> bool {
    use std::os::unix::ffi::OsStrExt;

    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` fills `info` for an address inside a loaded object; the address is this function's own.
    let found = unsafe { libc::dladdr(pin_library as *const libc::c_void, info.as_mut_ptr()) };
    // SAFETY: `dladdr` succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: `dli_fname` is the NUL-terminated path of the loaded object; a second reference to an object already
    // loaded only raises its count, and `RTLD_NODELETE` keeps it mapped. The handle is kept for good on purpose.
    let handle = unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NODELETE) };
    if !handle.is_null() {
        return true;
    }
    // Linked into the program itself (the unit tests), the code is never unloaded; glibc refuses to open an
    // executable as a library.
    // SAFETY: as above, a NUL-terminated path.
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes(),
    ));
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    std::env::current_exe().ok().and_then(|exe| canonical(&exe)).is_some_and(|exe| canonical(&path) == Some(exe))
}

/// Keeps the DLL holding this code loaded until the process ends (`GET_MODULE_HANDLE_EX_FLAG_PIN`, Windows'
/// counterpart of `RTLD_NODELETE`); false where that cannot be done, and the caller must wait instead.
#[cfg(windows)]
fn pin_library() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_PIN,
    };

    let mut module = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the name argument is an address inside the module to find, here this function's
    // own; `module` receives its handle. PIN keeps the module loaded whatever `FreeLibrary` calls follow, which is
    // the point, so the handle is not released. The program itself (the unit tests) is pinned as well: harmless.
    unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
            pin_library as *const u16,
            &mut module,
        ) != 0
    }
}

/// Elsewhere the library cannot be pinned here: the caller waits for the worker (it stops within one engine layer).
#[cfg(not(any(unix, windows)))]
fn pin_library() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_worker_is_detached_and_runs_on() {
        let (release, released) = crossbeam::channel::bounded::<()>(0);
        let (done_tx, done) = crossbeam::channel::bounded::<()>(1);
        let worker = std::thread::spawn(move || {
            let _ = released.recv();
            let _ = done_tx.send(());
        });
        assert!(finish_behind(worker), "a worker still busy after the grace is detached where pinning works");
        // The detached thread is still waiting: it ends only now, behind the caller.
        release.send(()).unwrap();
        done.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_worker_that_ends_at_once_is_joined() {
        let worker = std::thread::spawn(|| {});
        assert!(!finish_behind(worker));
    }
}
