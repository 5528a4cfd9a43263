//! The command line, with Docker Compose's global flags and command names.

use crate::args::*;
use crate::global::Global;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rcompose",
    version,
    about = "Define and run multi-container applications, Compose-compatible",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve and render the compose file in canonical format
    #[command(visible_alias = "convert")]
    Config(ConfigArgs),
    /// Show the rcompose version information
    Version(VersionArgs),
    /// Generate a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Attach local standard input, output, and error streams to a service's running container
    Attach(AttachArgs),
    /// Convert compose files into another model
    Bridge(Pending),
    /// Build or rebuild services
    Build(BuildArgs),
    /// Manage the build cache
    Builder(BuilderArgs),
    /// Create a new image from a service container's changes
    Commit(Pending),
    /// Copy files/folders between a service container and the local filesystem
    Cp(CpArgs),
    /// Creates containers for a service
    Create(CreateArgs),
    /// Stop and remove containers, networks
    Down(DownArgs),
    /// Receive real time events from containers
    Events(EventsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Export a service container's filesystem as a tar archive
    Export(Pending),
    /// List images used by the created containers
    Images(ImagesArgs),
    /// Manage images
    Image(ImageArgs),
    /// Force stop service containers
    Kill(KillArgs),
    /// View output from containers
    Logs(LogsArgs),
    /// List running compose projects
    Ls(LsArgs),
    /// Pause services
    Pause(ServicesArgs),
    /// Print the public port for a port binding
    Port(PortArgs),
    /// List containers
    Ps(PsArgs),
    /// Publish compose application
    Publish(Pending),
    /// Pull service images
    Pull(PullArgs),
    /// Push service images
    Push(Pending),
    /// Restart service containers
    Restart(StopArgs),
    /// Removes stopped service containers
    Rm(RmArgs),
    /// Run a one-off command on a service
    Run(RunArgs),
    /// Scale services
    Scale(ScaleArgs),
    /// Start services
    Start(ServicesArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Stop services
    Stop(StopArgs),
    /// Display the running processes
    Top(ServicesArgs),
    /// Unpause services
    Unpause(ServicesArgs),
    /// Create and start containers
    Up(UpArgs),
    /// List volumes
    Volumes(Pending),
    /// Block until containers of all (or specified) services stop
    Wait(WaitArgs),
    /// Watch the build context for services and rebuild/refresh containers when files are updated
    Watch(WatchArgs),
    /// Run the engine (started on demand by the other commands)
    /// Runs the engine (started on demand by the other commands).
    Daemon,
}

impl Command {
    /// The command's name, for messages.
    pub fn name(&self) -> String {
        let dbg = format!("{self:?}");
        let head = dbg.split(['(', ' ', '{']).next().unwrap_or("").to_string();
        head.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
