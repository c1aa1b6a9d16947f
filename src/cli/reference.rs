//! Shell completions and man pages, generated from the clap definitions so
//! that they can never disagree with the command line they describe.

use crate::error::{Error, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> crate::commands::Outcome {
    let mut command = super::Cli::command();
    clap_complete::generate(shell, &mut command, "pgproof", &mut std::io::stdout());
    crate::commands::Outcome::success("")
}

/// Writes `pgproof(1)` to standard output, or with `dir` the whole set:
/// `pgproof.1` and one `pgproof-<command>.1` per command, as `man -l` and
/// packagers expect.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let command = super::Cli::command();
    match dir {
        None => std::io::stdout()
            .write_all(&render(&command))
            .map_err(|e| Error::io("writing the man page to", Path::new("standard output"), e)),
        Some(dir) => write_all_pages(command, dir).map_err(|(path, e)| {
            Error::io("writing", &path, e)
                .with_hint("give --dir a directory this user can create and write")
        }),
    }
}

fn render(command: &clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    page
}

fn write_all_pages(
    command: clap::Command,
    dir: &Path,
) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let write = |name: &str, page: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, page).map_err(|e| (path, e))
    };
    // Each command gets its own page under the name a reader types
    // (`man pgproof-restore`), with the binary name its SYNOPSIS shows.
    let mut command = command;
    command.build();
    write("pgproof.1", render(&command))?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("pgproof-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("pgproof {}", sub.get_name()));
        write(&format!("{name}.1"), render(&page))?;
    }
    Ok(())
}
