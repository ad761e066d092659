//! The guest kernel under the workspace's lints: `cargo test --workspace` fails if
//! `cargo clippy` has anything to say about pv-guest, its libraries (`pv-guest/netstack`,
//! `pv-guest/user`) or its ring-3 driver tasks (`pv-guest/netd`, `pv-guest/blkd`).
//!
//! pv-guest is its own workspace (a no_std kernel for `x86_64-unknown-none`), so the
//! root's `cargo clippy` never sees it, and hv/build.rs only builds it. This test runs
//! clippy on it with `-D warnings`: every lint pv-guest's Cargo.toml denies
//! (`missing_docs`, `unsafe_op_in_unsafe_fn`, `clippy::undocumented_unsafe_blocks`)
//! and every default clippy warning fails the suite, with clippy's own output.
//!
//! Like hv/build.rs, it runs a second `cargo` with its own target directory (under the
//! workspace's, so `cargo clean` removes it) and without the outer build's flags.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

include!("../hv/guest_env.rs");

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("pv-guest")
}

/// A `cargo` command in pv-guest/ with the outer build's flags removed.
fn guest_cargo(args: &[&str]) -> Command {
    let mut command = Command::new(cargo());
    command.current_dir(guest_dir()).args(args);
    for var in HOST_ONLY_ENV {
        command.env_remove(var);
    }
    command
}

fn clippy_installed() -> bool {
    guest_cargo(&["clippy", "--version"]).output().is_ok_and(|out| out.status.success())
}

/// Whether clippy can run, installing it with rustup if it is missing (and saying so).
fn ensure_clippy() -> bool {
    if clippy_installed() {
        return true;
    }
    eprintln!("guest_lints: clippy is missing; installing it with `rustup component add clippy`");
    let added = Command::new("rustup").args(["component", "add", "clippy"]).status();
    matches!(added, Ok(status) if status.success()) && clippy_installed()
}

fn show(output: &Output) -> String {
    format!(
        "--- exit status: {}\n--- clippy's output:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_guest_kernel_has_no_clippy_warnings() {
    if !ensure_clippy() {
        eprintln!(
            "SKIPPED: the guest's clippy check: clippy is not installed and `rustup component add clippy` \
             did not install it. Install clippy to run it."
        );
        return;
    }
    // Three workspaces: pv-guest's (the kernel, pv-netstack and pv-user), netd's and
    // blkd's. The two tasks are user programs: static, small code model (the flags
    // pv-guest's build script gives them).
    const USER_PROGRAM: Option<&str> = Some("-Crelocation-model=static\u{1f}-Ccode-model=small");
    for (dir, rustflags) in [("", None), ("netd", USER_PROGRAM), ("blkd", USER_PROGRAM)] {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pv-guest-clippy-{}", if dir.is_empty() { "kernel" } else { dir }));
        let mut clippy = guest_cargo(&["clippy", "--workspace", "--release", "--target", GUEST_TARGET, "--target-dir"]);
        clippy.current_dir(guest_dir().join(dir)).arg(&target_dir).args(["--", "-D", "warnings"]);
        if let Some(flags) = rustflags {
            clippy.env("CARGO_ENCODED_RUSTFLAGS", flags);
        }
        let output = clippy.output().unwrap_or_else(|e| panic!("could not run {} clippy in pv-guest/{dir}: {e}", cargo()));
        assert!(
            output.status.success(),
            "clippy found problems in pv-guest/{dir} (run `cd pv-guest/{dir} && cargo clippy --release -- -D warnings`)\n{}",
            show(&output)
        );
    }
}
