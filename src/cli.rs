//! The command line, with Docker Compose's global flags and command names.

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
    #[arg(short = 'p', long = "project-name", global = true, value_name = "NAME")]
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
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn)]
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
    Attach(Pending),
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
    Run(Pending),
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
    Watch(Pending),
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

#[derive(Debug, Args, Clone, Default)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long, conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    /// Recreate dependent containers
    #[arg(long)]
    pub always_recreate_deps: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances (SERVICE=NUM)
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Don't start the services after creating them
    #[arg(long)]
    pub no_start: bool,
    /// Stops all containers if any container was stopped
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Stops all containers if any container exited with failure
    #[arg(long)]
    pub abort_on_container_failure: bool,
    /// Return the exit code of the selected service container. Implies --abort-on-container-exit
    #[arg(long, value_name = "SERVICE")]
    pub exit_code_from: Option<String>,
    /// Use this timeout in seconds for container shutdown
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Recreate anonymous volumes instead of retrieving data from the previous containers
    #[arg(short = 'V', long)]
    pub renew_anon_volumes: bool,
    /// Restrict attaching to the specified services
    #[arg(long, value_name = "SERVICE")]
    pub attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services
    #[arg(long, value_name = "SERVICE")]
    pub no_attach: Vec<String>,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show timestamps
    #[arg(long)]
    pub timestamps: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Watch source code and rebuild/refresh containers when files are updated
    #[arg(short = 'w', long)]
    pub watch: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub force_recreate: bool,
    #[arg(long, conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    #[arg(long)]
    pub remove_orphans: bool,
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    #[arg(long)]
    pub quiet_pull: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Remove images used by services ("local"|"all")
    #[arg(long, value_name = "TYPE")]
    pub rmi: Option<String>,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Format output using a custom template: table, json
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// Filter services by a property (supported filters: status)
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
    /// Filter services by status
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(value_name = "SERVICE")]
    pub service: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, value_name = "LINES")]
    pub tail: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// SIGNAL to send to the container
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output: table, json
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// Filter output based on conditions provided (name=)
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Drops project when the first container stops
    #[arg(long)]
    pub down_project: bool,
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    pub json: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Format the output: table, json
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    pub service: String,
    pub private_port: u16,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VAL")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached (the default)
    #[arg(short, long, default_value_t = true)]
    pub interactive: bool,
    /// Disable pseudo-TTY allocation. By default `exec` allocates a TTY.
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    /// Run the command as this user
    #[arg(short, long)]
    pub user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Give extended privileges to the process
    #[arg(long)]
    pub privileged: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    #[arg(value_name = "SERVICE=REPLICAS", required = true)]
    pub scale: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table, json
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// SERVICE:SRC_PATH or a local path (`-`: a tar stream on standard input)
    pub src: String,
    /// SERVICE:DEST_PATH or a local path (`-`: a tar stream on standard output)
    pub dest: String,
}
