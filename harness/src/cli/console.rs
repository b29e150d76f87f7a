//! Where the command line's words go: stdout or stderr, coloured on a
//! terminal (anstream: `--color`, `NO_COLOR`, `CLICOLOR_FORCE`), and what a
//! closed pipe means (exit quietly, as `ls | head` does).

#![allow(unsafe_code)] // opts in: SIGPIPE back to its default disposition

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use shm_harness::runner::Status;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorArg {
    /// Colour when writing to a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always colour (`CLICOLOR_FORCE` does the same for `auto`).
    Always,
    /// Never colour.
    Never,
}

impl ColorArg {
    fn choice(self) -> anstream::ColorChoice {
        match self {
            ColorArg::Auto => anstream::ColorChoice::Auto,
            ColorArg::Always => anstream::ColorChoice::Always,
            ColorArg::Never => anstream::ColorChoice::Never,
        }
    }
}

/// Which standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A standard stream that strips colour unless the user's choice and the
/// stream allow it, and that ends the process quietly when its reader is gone.
pub struct Console {
    out: Box<dyn Write>,
    /// Whether a closed pipe ends the process (else: the console goes quiet).
    die_on_broken_pipe: bool,
    closed: bool,
}

impl Console {
    /// A console on `target` with the `--color` choice.
    pub fn new(target: Target, color: ColorArg) -> Console {
        let out: Box<dyn Write> = match target {
            Target::Stdout => Box::new(anstream::AutoStream::new(io::stdout(), color.choice())),
            Target::Stderr => Box::new(anstream::AutoStream::new(io::stderr(), color.choice())),
        };
        Console { out, die_on_broken_pipe: true, closed: false }
    }

    /// Standard output as is, colour codes and all (for documents: JSON,
    /// JUnit, which must reach their reader byte for byte).
    pub fn raw_stdout() -> Console {
        Console { out: Box::new(io::stdout()), die_on_broken_pipe: true, closed: false }
    }

    /// Makes a closed pipe silence this console instead of ending the
    /// process: for progress beside a report that still has to be written
    /// to its file.
    pub fn outlive_its_reader(mut self) -> Console {
        self.die_on_broken_pipe = false;
        self
    }

    /// Writes `text` and a newline (see [`Console::write`]).
    pub fn line(&mut self, text: &str) {
        self.write(text);
        self.write("\n");
    }

    /// Writes `text`; a closed pipe ends the process quietly
    /// ([`die_of_broken_pipe`]) unless [`Console::outlive_its_reader`], any
    /// other error ends it with status 2.
    pub fn write(&mut self, text: &str) {
        if self.closed {
            return;
        }
        if let Err(e) = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe && !self.die_on_broken_pipe {
                self.closed = true;
                return;
            }
            write_failed(e);
        }
    }
}

/// What a failed write of ours to stdout or stderr means.
pub fn write_failed(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        die_of_broken_pipe();
    }
    let _ = writeln!(io::stderr(), "shm-harness: cannot write the output: {e}");
    std::process::exit(2)
}

/// Ends the process as a C program that writes into a closed pipe ends: by
/// SIGPIPE, silently (the shell sees status 141, as for `ls | head`).
/// Children of a run in flight get SIGTERM from their parent-death signal
/// and clean up after themselves.
pub fn die_of_broken_pipe() -> ! {
    // SAFETY: restoring the default disposition of SIGPIPE and raising it
    // touches no memory; the process ends in `raise`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached unless SIGPIPE is blocked: the same outcome without the signal.
    std::process::exit(141)
}

/// The style of a verdict's tag.
pub fn status_style(status: Status) -> Style {
    let color = match status {
        Status::Pass => AnsiColor::Green,
        Status::Fail | Status::Error => AnsiColor::Red,
        Status::Skip => AnsiColor::Yellow,
        Status::Xfail => AnsiColor::Cyan,
        // Loud: a known defect may be fixed, and its `xfail` is stale.
        Status::Xpass => AnsiColor::Magenta,
    };
    Style::new().bold().fg_color(Some(color.into()))
}

/// `text` in `style` (stripped again by the console when colour is off).
pub fn styled(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The bold style of headings.
pub fn heading() -> Style {
    Style::new().bold()
}
