//! The command line, with Docker Compose's global flags and command names.

pub use crate::args::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Compose configuration files (`-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first file)
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profile: Vec<String>,
    /// When to print ANSI control characters
    #[arg(long, global = true, value_enum, default_value_t = Ansi::Auto, env = "COMPOSE_ANSI")]
    pub ansi: Ansi,
    /// Type of progress output
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto, env = "COMPOSE_PROGRESS")]
    pub progress: Progress,
    /// Log level
    #[arg(long, global = true, value_enum, ignore_case = true, default_value_t = LogLevel::Warn)]
    pub log_level: LogLevel,
    /// Control max parallelism, -1 for unlimited
    #[arg(long, global = true, allow_negative_numbers = true, env = "COMPOSE_PARALLEL_LIMIT")]
    pub parallel: Option<i64>,
    /// Execute command in dry run mode
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Run compose in backward compatibility mode
    #[arg(long, global = true)]
    pub compatibility: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Ansi {
    Never,
    Always,
    Auto,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Progress {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Format the output
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Print the model names, one per line
    #[arg(long)]
    pub models: bool,
    /// Print the service config hash, one per line ("*" for all services)
    #[arg(long, value_name = "SERVICES")]
    pub hash: Option<String>,
    /// Print the environment used for interpolation
    #[arg(long)]
    pub environment: bool,
    /// Print the variables the model uses, with their defaults
    #[arg(long)]
    pub variables: bool,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    pub quiet: bool,
    /// Save to file (default to stdout)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Don't interpolate environment variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Don't resolve file paths
    #[arg(long)]
    pub no_path_resolution: bool,
    /// Don't normalize the model
    #[arg(long)]
    pub no_normalize: bool,
    /// Don't check model consistency
    #[arg(long)]
    pub no_consistency: bool,
    /// Pin image tags to digests
    #[arg(long)]
    pub resolve_image_digests: bool,
    /// Produce an override file with image digests
    #[arg(long)]
    pub lock_image_digests: bool,
    /// Don't resolve service environment variables
    #[arg(long)]
    pub no_env_resolution: bool,
    /// Services to print (with what they depend on)
    #[arg(add = crate::completion::services())]
    pub service: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format the output (no `-f`: it names the Compose file here)
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Shows only the version number
    #[arg(long)]
    pub short: bool,
}

/// Arguments of a command that is not built yet: taken whole, so that the message
/// names the command rather than a flag.
#[derive(Debug, Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load an image from a docker save or OCI archive (or an OCI layout directory)
    Load {
        /// Read from this archive
        #[arg(short, long)]
        input: PathBuf,
        /// Suppress the load output
        #[arg(short, long)]
        quiet: bool,
    },
    /// Import a root filesystem (directory or tarball) as an image
    Import {
        /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)
        #[arg(short, long = "change")]
        changes: Vec<String>,
        /// Directory or tarball
        source: PathBuf,
        /// Name the image (NAME[:TAG])
        name: Option<String>,
    },
    /// List images
    #[command(visible_alias = "list")]
    Ls {
        /// Only show image IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format the output
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Display detailed information on one or more images
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images
    Prune {
        /// Remove all images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation (no `-f`: it names the Compose file here)
        #[arg(long)]
        force: bool,
    },
    /// Download an image from a registry
    Pull {
        name: String,
        /// Suppress verbose output
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum TableFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Apply pull policy ("missing"|"always")
    #[arg(long)]
    pub policy: Option<String>,
    /// Pull what is necessary and ignore images that fail to pull
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Also pull services declared as dependencies
    #[arg(long)]
    pub include_deps: bool,
    /// Pull without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(add = crate::completion::services())]
    pub services: Vec<String>,
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
    Build(Pending),
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
    Watch(crate::watch::command::WatchArgs),
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
