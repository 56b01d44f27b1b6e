//! Prism (`@stoplight/prism-cli`, installed with the OAuth test server by `npm ci` in
//! `tests/oauth`) serving a provider's published API description (`tests/apps/specs/`) as a
//! validating mock on a loopback port: a request that breaks the description's contract
//! (method, path, query, body schema, missing credentials) is answered with an error instead
//! of a mock.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Prism serving `spec` on a free loopback port; killed on drop.
pub struct Prism {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prism {
    pub async fn start(spec: &Path) -> Prism {
        super::oauth::ensure_installed();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/node_modules/.bin/prism"),
        )
        .args([
            "mock",
            "--errors",
            "--dynamic",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("Prism (npm ci in tests/oauth) is needed");
        let stdout = child.stdout.take().unwrap();
        // Ready when it says it listens (its first lines list the operations it serves); its
        // output is read to the end, or Prism fails writing to a closed pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap_or_default();
                if line.contains("Prism is listening") {
                    let _ = tx.send(());
                }
            }
        });
        let ready =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)).is_ok())
                .await
                .unwrap();
        assert!(ready, "Prism did not start");
        Prism {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}
