//! Two things rustc cannot know from the source. The git commit keygate is
//! built from, for the `keygate_build_info` metric: `KEYGATE_COMMIT` in the
//! environment wins (a Docker build has no `.git`: `--build-arg
//! KEYGATE_COMMIT=...`); without either it is `unknown`. And, for optimised
//! builds, where the linker puts the code that runs (`hot_code_first`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KEYGATE_COMMIT");
    let commit = std::env::var("KEYGATE_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KEYGATE_COMMIT={commit}");
    hot_code_first();
}

/// Asks the linker to place the functions a running gateway executes
/// together, hottest first (`link/keygate.order`, written by
/// `scripts/code-layout.sh`). The kernel maps code in 64 KiB windows around
/// each page touched: in the compiler's order the ~4 MB that runs is spread
/// over ~31 MB and most of that became resident. Optimised builds only, and
/// only where rustc links with lld by default (x86_64 Linux, GNU libc);
/// `KEYGATE_CODE_ORDER=0` turns it off for a build linked with another
/// linker. Names the binary no longer has are skipped, silently.
fn hot_code_first() {
    println!("cargo:rerun-if-changed=link/keygate.order");
    println!("cargo:rerun-if-env-changed=KEYGATE_CODE_ORDER");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let lld_by_default = env("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && env("CARGO_CFG_TARGET_OS") == "linux"
        && env("CARGO_CFG_TARGET_ENV") == "gnu";
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/keygate.order");
    let wanted = env("PROFILE") == "release" && env("KEYGATE_CODE_ORDER") != "0";
    if !wanted || !lld_by_default || !order.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=keygate=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=keygate=-Wl,--no-warn-symbol-ordering");
}

/// `git rev-parse --short=12 HEAD`, and a rebuild whenever HEAD moves: a
/// checkout changes HEAD, a commit the branch it names (a loose ref, or
/// packed-refs).
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten().filter(|path| Path::new(path).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    Some(commit)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}
