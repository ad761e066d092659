// How a second `cargo` for the guest is run, shared by hv/build.rs (which builds the
// guest) and tests/guest_lints.rs (which lints it): each `include!`s this file, since a
// build script and a test cannot share a module.

/// The guest's target (as in pv-guest/.cargo/config.toml).
const GUEST_TARGET: &str = "x86_64-unknown-none";

/// Environment variables of the outer cargo that must not reach the guest's: flags meant
/// for the host build, a target or target directory override, a wrapper.
const HOST_ONLY_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_LLVM_COV",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_PROFILE_DEV_DEBUG",
];
