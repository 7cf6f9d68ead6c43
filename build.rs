//! Tells the tests whether `../shared/fixtures` (public INFO samples that CI
//! always has beside the checkout, never committed here) is present, so a
//! test that needs it is reported as ignored, not passed, where it is not.
//! `tests/info_fixtures.rs` fails when it is missing under CI.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_fixtures)");
    println!("cargo::rerun-if-changed=../shared/fixtures/info");
    println!("cargo::rerun-if-changed=build.rs");
    if std::path::Path::new("../shared/fixtures/info").is_dir() {
        println!("cargo::rustc-cfg=shared_fixtures");
    }
}
