//! Privileges: `privileged`, `cap_add`/`cap_drop`, `security_opt` (no-new-privileges,
//! seccomp profiles) and `ulimits`.

use super::SpecProblem;
use compose::model::Service;

/// What the process may do.
pub(super) struct Security {
    pub privileged: bool,
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    /// `default`, `unconfined`, or a Docker JSON profile's text.
    pub seccomp: String,
    pub rlimits: Vec<(String, u64, u64)>,
}

pub(super) fn security(svc: &Service) -> Result<Security, SpecProblem> {
    let privileged = svc.privileged == Some(true);
    let mut no_new_privileges = false;
    let mut seccomp = if privileged { "unconfined" } else { "default" }.to_string();
    for opt in svc.security_opt.iter().flatten() {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match k {
            "no-new-privileges" => no_new_privileges = v != "false",
            "seccomp" if v == "unconfined" => seccomp = "unconfined".into(),
            "seccomp" => {
                seccomp = std::fs::read_to_string(v).map_err(|source| SpecProblem::SeccompProfile {
                    file: v.to_string(),
                    source,
                })?;
            }
            "label" | "apparmor" => return Err(SpecProblem::Labels(opt.clone())),
            _ => return Err(SpecProblem::SecurityOpt(opt.clone())),
        }
    }
    let capabilities = runtime::process::capabilities(
        svc.cap_add.as_deref().unwrap_or_default(),
        svc.cap_drop.as_deref().unwrap_or_default(),
        privileged,
    )?;
    let mut rlimits = Vec::new();
    for (name, u) in svc.ulimits.iter().flatten() {
        let (soft, hard) = (u.soft(), u.hard());
        if soft < 0 || hard < 0 {
            return Err(SpecProblem::NegativeUlimit(name.clone()));
        }
        rlimits.push((name.clone(), soft as u64, hard as u64));
    }
    Ok(Security {
        privileged,
        capabilities,
        no_new_privileges,
        seccomp,
        rlimits,
    })
}
