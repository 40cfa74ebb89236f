//! `type = "command"`: a runbook's own restore steps, run in order under the
//! job's isolation, for any tool the agent has no driver for.

use verifier::driver::{CommandDriver, Driver};

use super::*;

section!(Raw {
    restore: Option<Spanned<Steps>>,
    path: Option<Spanned<String>>,
    backup_time: Option<Spanned<String>>,
});

/// `restore = ["tool", "{sandbox}"]` (one step) or `[["a"], ["b"]]` (several).
#[derive(Deserialize)]
#[serde(untagged)]
enum Steps {
    One(Vec<String>),
    Many(Vec<Vec<String>>),
}

pub(super) const TYPE: Type = Type {
    name: "command",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let backup_time = s.backup_time(b.backup_time);
    let Some(r) = b.restore else {
        let span = s.kind_span.clone();
        s.at(span, "restore", "backup type \"command\" needs `restore`: the runbook's steps, e.g. [[\"rsync\", \"-a\", \"/mnt/mirror/\", \"{sandbox}/\"]]");
        return None;
    };
    let span = r.span();
    let steps = match r.into_inner() {
        Steps::One(v) => vec![v],
        Steps::Many(v) => v,
    };
    if steps.is_empty() || steps.iter().any(|s| s.is_empty()) {
        s.at(span, "restore", "every step needs at least a program name");
    }
    Some(Backup::new(Command(CommandDriver {
        steps,
        backup: b
            .path
            .map(|p| resolve(s.base, p.get_ref()).display().to_string()),
        backup_time,
        // Set for each drill from the job's run_as and network.
        isolation: Default::default(),
    })))
}

#[derive(Debug)]
struct Command(CommandDriver);

impl BackupKind for Command {
    fn describe(&self) -> String {
        format!("command, {} step(s)", self.0.steps.len())
    }

    fn driver(&self, job: &Job, _state_dir: &Path) -> Box<dyn Driver> {
        Box::new(CommandDriver {
            isolation: job.isolation.clone(),
            ..self.0.clone()
        })
    }
}
