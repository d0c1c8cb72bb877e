//! Runs the compatibility suite in `compat/` (real pusher-js, Laravel Echo, the Node and Python
//! Pusher SDKs and headless Chromium) against this build's `herald` binary.

use std::process::Command;

#[test]
fn real_clients_and_sdks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/compat");
    let out = Command::new(format!("{dir}/run"))
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .output()
        .expect("compat/run starts (bash is required)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "compat/run failed:\n{stdout}\n{stderr}"
    );
    // The summary names the count; make sure tests actually ran.
    assert!(stdout.contains("ℹ pass"), "no test summary:\n{stdout}");
    assert!(stdout.contains("ℹ fail 0"), "{stdout}");
}
