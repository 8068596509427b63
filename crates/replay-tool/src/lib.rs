//! `replay-tool`: the developers' and compliance officers' CLI over Kring's event log.
//!
//! The binary is a thin shell over this library: [`main_with`] parses the arguments, opens
//! the installation ([`open::open`]) and runs one subcommand. Each subcommand is a function
//! returning a [`output::Report`]; the "as of T" folds are pure functions in [`replay`].
//! Exit codes: [`error::exit`].
#![forbid(unsafe_code)]

pub mod anchor;
pub mod checksum;
pub mod cli;
pub mod consent;
pub mod error;
pub mod events;
pub mod export;
pub mod locate;
pub mod open;
pub mod output;
pub mod progress;
pub mod rebuild;
pub mod replay;
pub mod status;
pub mod time;
pub mod verify;
pub mod visibility;

use clap::Parser;
use cli::{Cli, Command};
use error::{exit, ToolError};
use kring_domain::access::Subject;
use output::{Format, Report};
use std::ffi::OsString;

/// Runs the tool with `args` (the first is the program name) and returns the exit code.
/// Usage errors print one line on stderr; `--help` and `--version` print to stdout.
pub async fn main_with(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replay-tool: {}", e.one_line());
            e.exit_code()
        }
    }
}

fn usage(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = output::print(&e.render().to_string());
        return exit::OK;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprint!("{}", e.render());
        return exit::USAGE;
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad usage");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("replay-tool: {message} (see --help)");
    exit::USAGE
}

/// Runs one parsed command line.
///
/// # Errors
/// The failure to report, with its exit code.
pub async fn run(cli: Cli) -> Result<u8, ToolError> {
    let format = Format::resolve(cli.format);
    if let Command::AnchorKey { anchor_key } = &cli.command {
        return show(&anchor::new_key(anchor_key)?, format);
    }
    let system = open::open(&cli.data_dir).await?;
    match cli.command {
        Command::Rebuild { projections } => {
            show(&rebuild::rebuild(&system, &projections).await?, format)
        }
        Command::ConsentHistory {
            child,
            purpose,
            from,
            to,
        } => show(
            &consent::history(&system, child, purpose, from, to).await?,
            format,
        ),
        Command::ConsentAsOf { child, at } => {
            show(&consent::as_of(&system, child, at).await?, format)
        }
        Command::WhoMaySee { media, at } => {
            show(&visibility::who_may_see(&system, media, at).await?, format)
        }
        Command::AnchorKey { anchor_key } => show(&anchor::new_key(&anchor_key)?, format),
        Command::Anchor {
            anchor_key,
            anchors,
        } => show(
            &anchor::anchor(&system.store, &anchor_key, &anchors).await?,
            format,
        ),
        Command::Verify {
            anchors,
            anchor_public_key,
        } => {
            let anchors = match (anchors, anchor_public_key) {
                (Some(file), Some(key)) => Some(kring_store::anchor::Anchors::read(&file, key)?),
                _ => None,
            };
            let report = verify::verify(&system, anchors.as_ref()).await?;
            show(&report, format)?;
            match report.findings.first() {
                None => Ok(exit::OK),
                Some(first) => {
                    let more = report.findings.len() - 1;
                    let tail = if more > 0 {
                        format!(" (and {more} more finding(s))")
                    } else {
                        String::new()
                    };
                    eprintln!("replay-tool: verify failed: {first}{tail}");
                    Ok(exit::FINDING)
                }
            }
        }
        Command::Export { subject } => {
            let subject = match (subject.person, subject.child) {
                (Some(p), _) => Subject::Person(p),
                (None, Some(c)) => Subject::Child(c),
                (None, None) => {
                    return Err(ToolError::Usage("give --person ID or --child ID".into()))
                }
            };
            show(&export::export(&system, subject).await?, format)
        }
        Command::Events {
            stream,
            from,
            follow,
            limit,
            sealed,
        } => {
            let query = events::EventsQuery {
                stream,
                from,
                follow,
                limit,
                sealed,
            };
            events::events(&system, query, format).await
        }
        Command::Status { checksums } => show(&status::status(&system, checksums).await?, format),
    }
}

fn show(report: &impl Report, format: Format) -> Result<u8, ToolError> {
    let text = output::render(report, format)?;
    output::print(&text).map_err(|e| ToolError::Io(format!("stdout: {e}")))?;
    Ok(exit::OK)
}
