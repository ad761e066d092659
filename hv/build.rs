//! Builds the guest kernel (`pv-guest`) for `x86_64-unknown-none` and tells `hv` where
//! the ELF is, so `include_bytes!` can embed it and `hv run` needs no path.
//!
//! This runs a second `cargo` inside the build. Three details make that safe:
//! - the guest gets its own target directory (under OUT_DIR), so the outer build's lock
//!   on `target/` is never contended;
//! - flags meant for the host build (RUSTFLAGS and friends, a target override, clippy's
//!   wrapper) are removed from the environment, so they do not leak into the guest;
//! - the bare-metal target is installed with rustup if it is missing, and we say so.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("guest_env.rs");

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("hv/ has a parent").to_path_buf();
    let guest_dir = root.join("pv-guest");
    for path in ["src", "Cargo.toml", "Cargo.lock", "build.rs", "linker.ld", ".cargo/config.toml", "netstack", "netd", "blkd", "user"] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(path).display());
    }
    // The guest's path dependencies: a change to either must rebuild the guest too.
    for dependency in ["pv-abi", "frontend-drivers"] {
        for path in ["src", "Cargo.toml"] {
            println!("cargo:rerun-if-changed={}", root.join(dependency).join(path).display());
        }
    }
    println!("cargo:rerun-if-changed={}", manifest_dir.join("guest_env.rs").display());

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    ensure_guest_target(&rustc);

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("pv-guest-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .current_dir(&guest_dir)
        .args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"])
        .arg(&target_dir);
    for var in HOST_ONLY_ENV {
        build.env_remove(var);
    }
    let status = build.status().unwrap_or_else(|e| panic!("could not run {cargo}: {e}"));
    if !status.success() {
        panic!("building the guest kernel (pv-guest) failed; see the errors above");
    }
    let elf = target_dir.join(GUEST_TARGET).join("release").join("pv-guest");
    assert!(elf.is_file(), "the guest build did not produce {}", elf.display());
    println!("cargo:rustc-env=PV_GUEST_ELF={}", elf.display());
}

/// Installs the guest's target with rustup if its standard library is missing.
fn ensure_guest_target(rustc: &str) {
    if target_installed(rustc) {
        return;
    }
    println!("cargo:warning=the Rust target {GUEST_TARGET} is missing; installing it with `rustup target add {GUEST_TARGET}`");
    let status = Command::new("rustup").args(["target", "add", GUEST_TARGET]).status();
    match status {
        Ok(s) if s.success() && target_installed(rustc) => {}
        Ok(_) | Err(_) => panic!(
            "the guest kernel needs the Rust target {GUEST_TARGET}, and `rustup target add {GUEST_TARGET}` \
             did not install it. Install it by hand (with rustup, or your distribution's rust-std for that target)."
        ),
    }
}

fn target_installed(rustc: &str) -> bool {
    let out = Command::new(rustc).args(["--print", "target-libdir", "--target", GUEST_TARGET]).output();
    match out {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            has_libcore(Path::new(&dir))
        }
        _ => false,
    }
}

fn has_libcore(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
        .unwrap_or(false)
}
