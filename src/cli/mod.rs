//! The command line: every command, its clap arguments, the tokio runtime, signal handling and
//! the mapping of errors to the documented exit codes. Library modules take typed inputs and
//! return typed errors; nothing below this module parses arguments, reads the process's
//! arguments or decides an exit code.

/// `println!` for the commands' output, except that a standard output closed early
/// (`siege … | head`) drops the text instead of panicking: the command goes on, and a run still
/// reverts its faults and writes its report.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` for what a command says on standard error, except that a standard error closed
/// early drops the text instead of panicking: a run still reverts, writes its report and exits
/// with its verdict.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($arg)*).and_then(|_| o.flush());
    }};
}

/// Whether standard output is a pipe or socket whose reader has gone (`| head` that has had
/// its lines): a streaming command that is quiet for a while notices it here, before it has
/// anything to write. A file, a terminal or an open pipe is not closed.
pub(crate) fn output_closed() -> bool {
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
    // SAFETY: one pollfd that lives across the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

mod client;
mod compare;
mod daemon;
mod gameday;
mod keys;
mod lab;
mod load;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Exit;

#[derive(Debug, Parser)]
#[command(
    name = "siege",
    version,
    about = "Chaos / game-day runner: drive load, inject faults, verify recovery, write the debrief report",
    after_help = Exit::HELP,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario end to end; the exit code is the verdict.
    #[command(after_help = Exit::HELP)]
    Run(run::RunArgs),
    /// Check scenarios (and daemon configs) without touching anything.
    #[command(after_help = Exit::HELP)]
    Validate {
        /// Scenario files, or daemon config files (told apart by a top-level `schedules`,
        /// `webhook` or `retention` key and no scenario key).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Dry run: resolve targets and print the timeline; injects nothing.
    #[command(after_help = Exit::HELP)]
    Plan(run::PlanArgs),
    /// Revert every fault that a crashed or killed run left behind.
    #[command(after_help = Exit::HELP)]
    Recover(run::RecoverArgs),
    /// The embedded practice lab (ECS + ALB + Aurora of local processes).
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Drive HTTP load at a URL on its own and print latency and errors.
    #[command(after_help = load::EXIT_HELP)]
    Load(load::LoadArgs),
    /// Re-render a report from a stored run directory.
    Report {
        /// A run directory under reports/ (holding report.json).
        dir: PathBuf,
    },
    /// Print the JSON Schema of the scenario format (for editors).
    Schema,
    /// Two runs of one scenario side by side (before and after a change); exit 1 when B is worse.
    #[command(after_help = compare::EXIT_HELP)]
    Compare(compare::CompareArgs),
    /// Runs of a `siege daemon`: list, show, start, stop, follow their events.
    #[command(after_help = Exit::HELP)]
    Runs {
        #[command(flatten)]
        connect: client::Connect,
        #[command(subcommand)]
        command: client::RunsCommand,
    },
    /// Schedules of a `siege daemon`: list, pause, resume, trigger now.
    #[command(after_help = Exit::HELP)]
    Schedules {
        #[command(flatten)]
        connect: client::Connect,
        #[command(subcommand)]
        command: client::SchedulesCommand,
    },
    /// Run the daemon: scheduled runs, run history and the HTTP API (docs/daemon.md).
    #[command(after_help = Exit::HELP)]
    Daemon(daemon::DaemonArgs),
    /// A class's game day: a daemon on loopback, the page's instructor and participant links
    /// (docs/gameday.md).
    #[command(after_help = Exit::HELP)]
    Gameday(gameday::GamedayArgs),
}

/// Parses the command line and runs; returns the documented exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => Exit::Invalid.into(),
            };
        }
    };
    match dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            let exit = e.downcast_ref::<Failure>().map(|f| f.exit).unwrap_or(Exit::Internal);
            eprintln!("error: {e:#}");
            exit.into()
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Run(args) => run::cmd_run(args),
        Command::Validate { files } => Ok(report::cmd_validate(&files)),
        Command::Plan(args) => run::cmd_plan(args),
        Command::Recover(args) => run::cmd_recover(args),
        Command::Lab { command } => lab::cmd_lab(command),
        Command::Load(args) => load::cmd_load(args),
        Command::Report { dir } => report::cmd_report(&dir),
        Command::Schema => Ok(report::cmd_schema()),
        Command::Compare(args) => compare::cmd_compare(args),
        Command::Runs { connect, command } => client::cmd_runs(connect, command),
        Command::Schedules { connect, command } => client::cmd_schedules(connect, command),
        Command::Daemon(args) => daemon::cmd_daemon(args),
        Command::Gameday(args) => gameday::cmd_gameday(args),
    }
}

/// An error that ends a command with a specific exit code (usage, precondition…), as opposed to
/// an internal error (70).
#[derive(Debug)]
pub(crate) struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    /// The error to return from a command: prints `message`, exits with `exit`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(exit: Exit, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { exit, message: message.into() })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A multi-threaded tokio runtime for the async commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
