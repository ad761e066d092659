//! Links the kernel with `linker.ld`, which places it where hv expects (see pv-abi's
//! layout), and first builds its two ring-3 driver tasks, `pv-netd` (`netd/`) and
//! `pv-blkd` (`blkd/`): the kernel embeds their ELF files (`task::net_task`,
//! `task::blk_task`), as a kernel embeds its initramfs.
use std::env;
use std::path::PathBuf;
use std::process::Command;

// GUEST_TARGET and HOST_ONLY_ENV: the same environment rules hv's build uses for this crate.
include!("../hv/guest_env.rs");

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bins=-T{}/linker.ld", dir.display());
    println!("cargo:rerun-if-changed=linker.ld");
    for path in ["user/src", "user/Cargo.toml", "netstack/src", "netstack/Cargo.toml", "../pv-abi/src", "../frontend-drivers/src"] {
        println!("cargo:rerun-if-changed={}", dir.join(path).display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (program, folder, variable) in [("pv-netd", "netd", "PV_NETD_ELF"), ("pv-blkd", "blkd", "PV_BLKD_ELF")] {
        let elf = build_task(&dir, &out_dir, program, folder);
        println!("cargo:rustc-env={variable}={}", elf.display());
    }
}

/// Builds one ring-3 program (its own cargo workspace in `folder`) and returns its ELF file.
fn build_task(dir: &std::path::Path, out_dir: &std::path::Path, program: &str, folder: &str) -> PathBuf {
    for path in ["src", "Cargo.toml", "Cargo.lock", "build.rs", "user.ld"] {
        println!("cargo:rerun-if-changed={}", dir.join(folder).join(path).display());
    }
    let target_dir = out_dir.join(format!("{folder}-target"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.current_dir(dir.join(folder)).args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"]).arg(&target_dir);
    for var in HOST_ONLY_ENV {
        build.env_remove(var);
    }
    // A user program at low addresses: static, small code model (the kernel's flags,
    // from this crate's .cargo/config.toml, would say code-model=kernel).
    build.env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static\u{1f}-Ccode-model=small");
    let status = build.status().unwrap_or_else(|e| panic!("could not run {cargo}: {e}"));
    if !status.success() {
        panic!("building the ring-3 task {program} (pv-guest/{folder}) failed; see the errors above");
    }
    let elf = target_dir.join(GUEST_TARGET).join("release").join(program);
    assert!(elf.is_file(), "the {program} build did not produce {}", elf.display());
    elf
}
