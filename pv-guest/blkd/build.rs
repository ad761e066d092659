//! Links the task with `user.ld`, which places it at user addresses the kernel accepts
//! (`pv-guest/src/task/user_image.rs`).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/user.ld");
    println!("cargo:rerun-if-changed=user.ld");
}
