//! `rcompose`: the command line. Loads the project with the `compose` crate and, for the
//! commands that act on what runs, talks to the engine over its socket (`client`).

mod args;
mod attach_cmd;
mod build_cmd;
mod build_view;
mod cli;
mod client;
mod completion;
mod config_cmd;
mod cp_cmd;
mod credentials;
mod exec_cmd;
mod global;
mod image_cmd;
mod lifecycle;
mod logs_cmd;
mod observe_cmd;
mod progress;
mod project;
mod ps_cmd;
mod render;
mod run_cmd;
mod session;
mod suggest;
mod table;
mod tarstream;
mod watch;

use anyhow::{Context, Result};
use args::Format;
use clap::Parser;
use cli::{Cli, Command};
use global::LogLevel;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The container helper: before anything else, while the process is one thread.
    match std::env::args_os().nth(1) {
        Some(a) if a == runtime::init::ARG => runtime::init::main(),
        Some(a) if a == runtime::init::EXEC_ARG => runtime::exec_helper::main(),
        _ => {}
    }
    completion::answer_if_asked();
    let cli = Cli::parse();
    init_logging(cli.global.log_level);
    progress::configure(&cli.global);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render_error(&e));
            ExitCode::from(1)
        }
    }
}

/// One line: the loader's errors already carry file, line and key.
fn render_error(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    if cli.global.dry_run {
        anyhow::bail!("--dry-run is not implemented yet");
    }
    match cli.command {
        Command::Config(args) => config_cmd::run(&cli.global, args),
        Command::Version(args) => {
            let v = env!("CARGO_PKG_VERSION");
            match (args.short, args.format) {
                (true, _) => println!("{v}"),
                (false, Some(Format::Json)) => println!("{}", serde_json::json!({ "version": format!("v{v}") })),
                (false, _) => println!("rcompose version v{v}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Image(args) => image_cmd::run(args.command),
        Command::Pull(args) => image_cmd::pull(&cli.global, args),
        Command::Build(args) => build_cmd::build(&cli.global, args),
        Command::Builder(args) => build_cmd::builder(args),
        Command::Completion { shell } => {
            completion::script(shell, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(a) => lifecycle::up(&cli.global, a),
        Command::Create(a) => lifecycle::create(&cli.global, a),
        Command::Down(a) => lifecycle::down(&cli.global, a),
        Command::Start(a) => lifecycle::start(&cli.global, a),
        Command::Stop(a) => lifecycle::stop(&cli.global, a, "stop"),
        Command::Restart(a) => lifecycle::stop(&cli.global, a, "restart"),
        Command::Kill(a) => lifecycle::kill(&cli.global, a),
        Command::Rm(a) => lifecycle::rm(&cli.global, a),
        Command::Pause(a) => lifecycle::pause(&cli.global, a, true),
        Command::Unpause(a) => lifecycle::pause(&cli.global, a, false),
        Command::Ps(a) => ps_cmd::ps(&cli.global, a),
        Command::Logs(a) => logs_cmd::logs(&cli.global, a),
        Command::Ls(a) => ps_cmd::ls(a),
        Command::Wait(a) => lifecycle::wait(&cli.global, a),
        Command::Exec(a) => exec_cmd::exec(&cli.global, a),
        Command::Attach(a) => attach_cmd::attach(&cli.global, a),
        Command::Run(a) => run_cmd::run(&cli.global, a),
        Command::Cp(a) => cp_cmd::cp(&cli.global, a),
        Command::Images(a) => observe_cmd::images(&cli.global, a),
        Command::Port(a) => observe_cmd::port(&cli.global, a),
        Command::Events(a) => observe_cmd::events(&cli.global, a),
        Command::Top(a) => observe_cmd::top(&cli.global, a),
        Command::Stats(a) => observe_cmd::stats(&cli.global, a),
        Command::Scale(a) => lifecycle::scale(&cli.global, a),
        Command::Watch(a) => lifecycle::watch(&cli.global, a),
        Command::Daemon => daemon(),
        other => anyhow::bail!("rcompose {}: not implemented yet", other.name()),
    }
}

/// `rcompose daemon`: the engine, logging to stderr (the CLI points that at
/// `<root>/engine.log` when it starts one).
fn daemon() -> Result<ExitCode> {
    // Whatever the shell that started us held open stays with us and goes no further:
    // no container, helper or child of ours gets it.
    safefs::fds::cloexec_from(3).context("marking inherited descriptors close-on-exec")?;
    let (root, run) = engine::api::paths();
    let helper = std::env::current_exe()?;
    // Few malloc arenas: every blocking thread would otherwise get one of its own, and
    // the engine's footprint grows with the number of containers started at once.
    // SAFETY: mallopt only changes allocator parameters.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Idle blocking threads (each container start uses one) go soon, stacks and all.
        .thread_keep_alive(std::time::Duration::from_millis(500))
        .enable_all()
        .build()?;
    rt.block_on(engine::serve(root, run, helper))?;
    // Blocking threads (log followers) must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}
