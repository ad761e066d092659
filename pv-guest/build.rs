//! Links the kernel with `linker.ld`, which places it where hv expects (see pv-abi's
//! layout), and builds the ring-3 network task `pv-netd` (`netd/`) first: the kernel
//! embeds its ELF file (`task::net_task`), as a kernel embeds its initramfs.
use std::env;
use std::path::PathBuf;
use std::process::Command;

// GUEST_TARGET and HOST_ONLY_ENV: the same environment rules hv's build uses for this crate.
include!("../hv/guest_env.rs");

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bins=-T{}/linker.ld", dir.display());
    println!("cargo:rerun-if-changed=linker.ld");
    for path in ["netd/src", "netd/Cargo.toml", "netd/Cargo.lock", "netd/build.rs", "netd/user.ld", "netstack/src", "netstack/Cargo.toml", "../pv-abi/src", "../frontend-drivers/src"] {
        println!("cargo:rerun-if-changed={}", dir.join(path).display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("netd-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.current_dir(dir.join("netd")).args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"]).arg(&target_dir);
    for var in HOST_ONLY_ENV {
        build.env_remove(var);
    }
    // A user program at low addresses: static, small code model (the kernel's flags,
    // from this crate's .cargo/config.toml, would say code-model=kernel).
    build.env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static\u{1f}-Ccode-model=small");
    let status = build.status().unwrap_or_else(|e| panic!("could not run {cargo}: {e}"));
    if !status.success() {
        panic!("building the ring-3 network task (pv-guest/netd) failed; see the errors above");
    }
    let elf = target_dir.join(GUEST_TARGET).join("release").join("pv-netd");
    assert!(elf.is_file(), "the netd build did not produce {}", elf.display());
    println!("cargo:rustc-env=PV_NETD_ELF={}", elf.display());
}
