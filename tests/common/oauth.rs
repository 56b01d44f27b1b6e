//! The real OAuth2 server the OAuth tests run against: the npm package `oauth2-mock-server`
//! (`tests/oauth/server.mjs`, installed by `npm ci` in `tests/oauth/` — with Prism, which
//! `tests/app_prism.rs` runs — which `.ci/run` does and which is done here on first use when
//! missing), started as a child process on loopback ports.
//! Its control server counts grants, sets `expires_in`, revokes refresh tokens, invalidates
//! access tokens, lists every token it issued, and serves a protected `/resource`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use serde_json::{Value, json};

/// A running mock OAuth2 server; stopped on drop.
pub struct MockOAuth {
    child: Child,
    /// `http://127.0.0.1:PORT`: `/authorize`, `/token`, `/userinfo`.
    pub issuer: String,
    /// The control server (and `/resource`).
    pub control: String,
    client: reqwest::Client,
}

fn oauth_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth")
}

/// `npm ci` in `tests/oauth` unless its packages (the OAuth2 server, Prism) are there (once
/// per test binary).
pub fn ensure_installed() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = oauth_dir();
    if dir
        .join("node_modules/oauth2-mock-server/package.json")
        .exists()
        && dir
            .join("node_modules/@stoplight/prism-cli/package.json")
            .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm (Node.js) is needed by the OAuth tests");
    assert!(status.success(), "npm ci in tests/oauth failed");
}

impl MockOAuth {
    pub async fn start() -> MockOAuth {
        ensure_installed();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(oauth_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed by the OAuth tests");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read the mock server's first line");
        let ready: Value = serde_json::from_str(
            line.strip_prefix("READY ")
                .unwrap_or_else(|| panic!("unexpected first line: {line}")),
        )
        .expect("READY json");
        let issuer = ready["issuer"]
            .as_str()
            .unwrap()
            .replace("localhost", "127.0.0.1");
        MockOAuth {
            child,
            issuer,
            control: ready["control"].as_str().unwrap().to_string(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/stats", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many token requests of `grant` the server answered.
    pub async fn grants(&self, grant: &str) -> u64 {
        self.stats().await[grant].as_u64().unwrap_or(0)
    }

    /// Every access and refresh token the server issued so far.
    pub async fn issued(&self) -> Vec<String> {
        let issued: Value = self
            .client
            .get(format!("{}/issued", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    /// The `expires_in` of the tokens issued from now on.
    pub async fn set_expires_in(&self, secs: i64) {
        self.client
            .post(format!("{}/config", self.control))
            .json(&json!({"expires_in": secs}))
            .send()
            .await
            .unwrap();
    }

    pub async fn revoke_refresh_tokens(&self) {
        self.client
            .post(format!("{}/revoke-refresh-tokens", self.control))
            .send()
            .await
            .unwrap();
    }

    pub async fn invalidate_access_tokens(&self) {
        self.client
            .post(format!("{}/invalidate-access-tokens", self.control))
            .send()
            .await
            .unwrap();
    }

    /// An integrations-file entry (JSON) for this server.
    pub fn integration(&self, alias: &str, context: &str, flow: &str) -> Value {
        json!({
            "provider": "oauth2", "alias": alias, "context": context, "flow": flow,
            "scope": "openid profile email", "title": format!("Test {alias}"),
            "client_id": "switchyard-test", "client_secret": "test-client-secret-5f1c",
            "authorize_url": format!("{}/authorize", self.issuer),
            "token_url": format!("{}/token", self.issuer),
            "userinfo_url": format!("{}/userinfo", self.issuer),
        })
    }
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
