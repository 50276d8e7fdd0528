//! Manual pages made from a binary's clap definition.
//!
//! Every installed binary answers `BIN --man-page` (checked before clap
//! parses anything, so it appears in no `--help`) by printing its page in
//! roff, section 8; `scripts/install.sh` writes each one to
//! `PREFIX/share/man/man8/BIN.8`. The page holds the description, the
//! options, every subcommand with its own synopsis, description and options
//! (section COMMANDS), and the sections the `after_help` text names: a line
//! `Examples:` at the left margin starts a section EXAMPLES, indented lines
//! are kept as written (commands to copy), other lines are filled text.

use std::ffi::OsStr;
use std::io::{self, Write};

/// The argument that asks for the page.
pub const FLAG: &str = "--man-page";
/// Section 8: system administration commands, as Ceph files its own.
pub const SECTION: &str = "8";

/// When the process was started as `BIN --man-page` (and nothing else),
/// prints the page of `cmd()` to stdout and exits; otherwise returns.
pub fn print_if_asked(cmd: impl FnOnce() -> clap::Command) {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(FLAG)) || args.next().is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = render(cmd(), &mut out).and_then(|()| out.flush()) {
        eprintln!("writing the manual page: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// The whole page of `cmd` in roff.
pub fn render(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let mut page = Vec::new();
    render_parts(cmd, &mut page)?;
    // Each part clap_mangen renders opens with the same two-line preamble
    // (the apostrophe string): keep the first.
    let mut seen = false;
    for line in String::from_utf8_lossy(&page).lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && seen {
            continue;
        }
        writeln!(out, "{line}")?;
        seen |= line.starts_with(".el .ds Aq");
    }
    Ok(())
}

fn render_parts(cmd: clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(cmd.get_name().to_uppercase())
        .section(SECTION)
        .source(format!("Kalmar {}", cmd.get_version().unwrap_or_default()))
        .manual("Kalmar Manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        writeln!(w, ".SH COMMANDS")?;
        for s in subs {
            render_subcommand(s, w)?;
        }
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        render_sections(&after.to_string(), w)?;
    }
    man.render_version_section(w)?;
    Ok(())
}

/// One subcommand (and its own, recursively) under COMMANDS: a `.SS`
/// heading with its full name, then its synopsis, description and options.
fn render_subcommand(sub: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let full = sub.get_bin_name().unwrap_or(sub.get_name());
    writeln!(w, ".SS \"{}\"", escape(full))?;
    let man = clap_mangen::Man::new(sub.clone());
    let body = |f: &dyn Fn(&mut dyn Write) -> io::Result<()>, w: &mut dyn Write| {
        let mut buf = Vec::new();
        f(&mut buf)?;
        // The section headings of a whole page would break the
        // subsection: keep only what is under them.
        for line in String::from_utf8_lossy(&buf).lines() {
            if !line.starts_with(".SH") {
                writeln!(w, "{line}")?;
            }
        }
        Ok::<(), io::Error>(())
    };
    body(&|w| man.render_synopsis_section(w), w)?;
    if sub.get_about().is_some() || sub.get_long_about().is_some() {
        writeln!(w, ".PP")?;
        body(&|w| man.render_description_section(w), w)?;
    }
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        body(&|w| man.render_options_section(w), w)?;
    }
    for s in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_subcommand(s, w)?;
    }
    Ok(())
}

/// `after_help` text as sections: `Heading:` at the left margin starts
/// `.SH HEADING`, indented lines are literal, other lines filled text.
fn render_sections(text: &str, w: &mut dyn Write) -> io::Result<()> {
    let mut literal = false;
    let mut in_section = false;
    for line in text.lines() {
        let heading = !line.starts_with(char::is_whitespace)
            && line.ends_with(':')
            && line.len() < 40
            && !line.contains("  ");
        if heading {
            if literal {
                writeln!(w, ".fi")?;
                literal = false;
            }
            writeln!(
                w,
                ".SH \"{}\"",
                escape(&line.trim_end_matches(':').to_uppercase())
            )?;
            in_section = true;
            continue;
        }
        if !in_section {
            writeln!(w, ".SH NOTES")?;
            in_section = true;
        }
        if line.trim().is_empty() {
            if literal {
                writeln!(w, ".fi")?;
                literal = false;
            }
            writeln!(w, ".PP")?;
        } else if line.starts_with(char::is_whitespace) {
            if !literal {
                writeln!(w, ".PP\n.nf")?;
                literal = true;
            }
            writeln!(
                w,
                "{}",
                escape_line(line.strip_prefix("  ").unwrap_or(line))
            )?;
        } else {
            if literal {
                writeln!(w, ".fi")?;
                literal = false;
            }
            writeln!(w, "{}", escape_line(line))?;
        }
    }
    if literal {
        writeln!(w, ".fi")?;
    }
    Ok(())
}

/// Text for roff: backslashes and minus signs escaped (so a copied
/// `--flag` stays two ASCII hyphens), quotes doubled for a quoted argument.
fn escape(s: &str) -> String {
    s.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('"', "\"\"")
}

/// A text line for roff: like [`escape`] without the quote rule, and a
/// leading `.` or `'` (a request otherwise) made plain text.
fn escape_line(s: &str) -> String {
    let e = s.replace('\\', "\\e").replace('-', "\\-");
    if e.starts_with('.') || e.starts_with('\'') {
        format!("\\&{e}")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    #[test]
    fn page_has_commands_options_and_examples() {
        let cmd = Command::new("kalmar-demo")
            .version("1.2.3")
            .about("A demo daemon")
            .subcommand(
                Command::new("run")
                    .about("Run it")
                    .arg(Arg::new("id").long("id").help("The id")),
            )
            .after_help("Examples:\n  kalmar-demo run --id 3\n  .hidden-looking line\n");
        let mut out = Vec::new();
        render(cmd, &mut out).expect("render");
        let page = String::from_utf8(out).expect("utf-8");
        assert!(page.contains("\n.TH KALMAR-DEMO 8 "), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "{page}");
        assert!(page.contains("kalmar\\-demo \\- A demo daemon"), "{page}");
        assert!(page.contains(".SH COMMANDS"), "{page}");
        assert!(page.contains(".SS \"kalmar\\-demo run\""), "{page}");
        assert!(page.contains("\\-\\-id"), "{page}");
        assert!(page.contains("The id"), "{page}");
        assert!(page.contains(".SH \"EXAMPLES\"\n.PP\n.nf\n"), "{page}");
        assert!(page.contains("kalmar\\-demo run \\-\\-id 3"), "{page}");
        assert!(page.contains("\n\\&.hidden"), "{page}");
        // One title only: the subcommand's page headings are dropped.
        assert_eq!(page.matches(".TH").count(), 1, "{page}");
        assert_eq!(page.matches(".SH SYNOPSIS").count(), 1, "{page}");
    }
}
