//! The global flags, Docker Compose's: where the project is and how output looks.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

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
