//! The agent run as a daemon for a test: started on a free port, its API
//! reached over HTTP, stopped on drop.

use super::*;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub struct Daemon {
    pub child: Option<Child>,
    base: String,
}

impl Daemon {
    pub fn start(site: &Site) -> Daemon {
        let text = std::fs::read_to_string(&site.config).unwrap();
        let port: u16 = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .map(|p| p.trim_end_matches('"').parse().unwrap())
            .expect("config has a listen address");
        let child = bin()
            .arg("-c")
            .arg(&site.config)
            .args(["--log-format", "json", "agent"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(site.path("agent.log")).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while http().get(&d.url("/healthz")).call().is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "agent did not start: {}",
                std::fs::read_to_string(site.path("agent.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub fn get(&self, p: &str) -> (u16, Value) {
        let mut r = http().get(&self.url(p)).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    pub fn post(&self, p: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = http().post(&self.url(p));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send_json(body).unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Sends SIGTERM and waits; returns the exit code and how long it took.
    pub fn stop(mut self) -> (Option<i32>, Duration) {
        self.signal("-TERM");
        let t0 = Instant::now();
        let status = self.child.take().unwrap().wait().unwrap();
        (status.code(), t0.elapsed())
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        self.child.take().unwrap().wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn ledger_records(site: &Site) -> Vec<Value> {
    std::fs::read_to_string(site.path("state/ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn agent_section(port: u16, token: bool) -> String {
    let tok = if token {
        "api_token_file = \"token\"\n"
    } else {
        ""
    };
    format!(
        "[agent]\nstate_dir = \"state\"\nsandbox_dir = \"sandbox\"\ntimezone = \"Asia/Tokyo\"\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_drills = 2\n{tok}"
    )
}

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A site whose config is `agent_section` + `jobs`, with a token file.
pub fn daemon_site(jobs: &str, token: bool) -> Site {
    let site = Site::new("");
    std::fs::write(site.path("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        &site.config,
        format!("{}{jobs}", agent_section(free_port(), token)),
    )
    .unwrap();
    site
}

/// `n` files of 1 MB under `dir`: enough data that a drill takes a while.
pub fn big_tree(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..n {
        let bytes: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(31) ^ f) as u8)
            .collect();
        std::fs::write(dir.join(format!("f{f:04}")), bytes).unwrap();
    }
}

pub fn dir_job(name: &str, dir: &str, schedule: Option<&str>) -> String {
    let sched = schedule
        .map(|s| format!("schedule = \"{s}\"\n"))
        .unwrap_or_default();
    format!(
        "\n[[job]]\nname = \"{name}\"\n{sched}source = \"{dir}\"\n[job.backup]\ntype = \"dir\"\npath = \"{dir}\"\n"
    )
}

/// A dir job whose drills take at least `secs` seconds, however fast the
/// machine: a post-restore check sleeps.
pub fn slow_dir_job(name: &str, dir: &str, schedule: Option<&str>, secs: &str) -> String {
    dir_job(name, dir, schedule) + &format!("[[job.check]]\nrun = [\"sleep\", \"{secs}\"]\n")
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn ts(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
}
