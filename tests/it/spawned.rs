//! Helpers for a spawned `herald` binary beyond common.rs: its path and its log lines.

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// The next log line containing `needle` (bounded).
pub async fn wait_log(
    logs: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    tokio::time::timeout(crate::common::WAIT, async {
        loop {
            let line = logs.recv().await.expect("herald is running");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
}

/// A spawned herald that is killed when the test ends, even by a failed assertion (a leaked
/// child would keep running, and holding whatever file descriptors it inherited).
pub struct Spawned(Option<std::process::Child>);

impl Spawned {
    /// Guards `child`.
    pub fn new(child: std::process::Child) -> Spawned {
        Spawned(Some(child))
    }

    /// The running child.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not taken")
    }

    /// Hands the child over (to wait for its exit); the caller is responsible for it now.
    pub fn take(mut self) -> std::process::Child {
        self.0.take().expect("not taken")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every stderr line of a spawned herald, as they come.
pub fn log_lines(child: &mut std::process::Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs the herald binary with `--config file`, logging at warn with its output discarded,
/// behind `wrapper` when given (such as `ip netns exec <namespace>`); guarded.
pub fn herald(wrapper: &[&str], file: &std::path::Path) -> Spawned {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => std::process::Command::new(BIN),
    };
    let child = cmd
        .arg("--config")
        .arg(file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("herald starts");
    Spawned::new(child)
}

/// Runs the herald binary with `args` and `--config file`, logging at `level` (`None`: the
/// default, no `RUST_LOG`) without colours; guarded, with its log lines as they come.
pub fn logged(
    args: &[&str],
    file: &std::path::Path,
    level: Option<&str>,
) -> (Spawned, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(file)
        .env("NO_COLOR", "1");
    match level {
        Some(l) => cmd.env("RUST_LOG", l),
        None => cmd.env_remove("RUST_LOG"),
    };
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herald starts");
    let mut spawned = Spawned::new(child);
    let logs = log_lines(spawned.child());
    (spawned, logs)
}
