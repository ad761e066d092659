//! Debug builds only: make one thread kind misbehave, so a test can watch its filter
//! stop it.
//!
//! With `HV_TEST_SECCOMP_VIOLATION=<kind>` in the environment (`<kind>` is a thread
//! kind's name with `-` for spaces: `console-backend`, `block-backend`, `vcpu`,
//! `control-accept`, `control-connection`, `watchdog`, `tap-port`, `net-backend`), a thread of that kind opens a
//! network socket right after installing its filter, which no filter allows.
//!
//! Why it cannot be abused: it exists only when `debug_assertions` are on (release builds
//! compile this function to nothing); it is read from hv's own environment, which only
//! the user starting hv sets, never the guest; and all it can do is end hv the way an
//! attack would, which is what the filter does anyway.

use super::ThreadKind;

/// The environment variable that picks the thread kind.
#[cfg(debug_assertions)]
pub const VIOLATION_VARIABLE: &str = "HV_TEST_SECCOMP_VIOLATION";

/// Makes a forbidden call if the environment asks this kind of thread to.
#[cfg(debug_assertions)]
pub(super) fn misbehave_if_asked(kind: ThreadKind) {
    let Some(wanted) = std::env::var_os(VIOLATION_VARIABLE) else { return };
    if wanted.to_str() == Some(kind.name().replace(' ', "-").as_str()) {
        // SAFETY: socket takes no pointers; it is meant to be refused (SIGSYS).
        unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        }
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
pub(super) fn misbehave_if_asked(_: ThreadKind) {}
