//! Shell completion. `rcompose completion SHELL` prints a script that asks rcompose itself
//! for the candidates as the user types (clap_complete's `COMPLETE=<shell>` protocol), so
//! commands and flags are always this binary's, and service names are the project's
//! (see `suggest`).

use clap::CommandFactory;
use clap_complete::env::EnvCompleter;

/// The variable that turns a run of rcompose into a completion request.
pub const VAR: &str = "COMPLETE";

/// Answers a completion request and exits, if this run is one.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(crate::cli::Cli::command)
        .var(VAR)
        .complete();
}

/// `completion SHELL`: the registration script, calling this executable by its path.
pub fn script(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use clap_complete::env::{Bash, Elvish, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Zsh => &Zsh,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::PowerShell => &Powershell,
        other => anyhow::bail!("completion for {other} is not implemented yet"),
    };
    let exe = std::env::current_exe()?;
    completer.write_registration(VAR, "rcompose", "rcompose", &exe.to_string_lossy(), out)?;
    Ok(())
}
