//! Reading what the user types: when a (multi-line) statement is complete, and which lines
//! are the shell's own commands rather than SQL.

/// Whether `text` holds only complete statements: after comments are set aside, it ends in
/// a `;` that is outside any quote. Text with nothing but blanks and comments is complete
/// (there is nothing to wait for).
pub fn is_complete(text: &str) -> bool {
    let mut last_significant = None;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(open) = quote {
            if c == open {
                // A doubled quote escapes itself.
                if chars.peek() == Some(&open) {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            last_significant = Some(c);
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                last_significant = Some(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for skipped in chars.by_ref() {
                    if previous == '*' && skipped == '/' {
                        break;
                    }
                    previous = skipped;
                }
            }
            c if c.is_whitespace() => {}
            c => last_significant = Some(c),
        }
    }
    quote.is_none() && matches!(last_significant, None | Some(';'))
}

/// The shell's own commands, which need no `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliCommand {
    Help,
    Exit,
    Clear,
    History,
    Version,
    /// `server` shows the server, `server URL` switches to another.
    Server(Option<String>),
    /// `output` shows the format, `output TABULAR|JSON` sets it.
    Output(Option<String>),
    /// `spool FILE` copies the session into a file, `spool OFF` stops.
    Spool(String),
    /// `run script FILE` runs the statements of a file.
    RunScript(String),
}

/// The command a line is, when it is one of the shell's own (case-insensitive; a trailing
/// `;` is allowed).
pub fn cli_command(line: &str) -> Option<CliCommand> {
    let line = line.trim().trim_end_matches(';').trim();
    let mut words = line.split_whitespace();
    let first = words.next()?.to_lowercase();
    let rest: Vec<&str> = words.collect();
    let argument = |rest: &[&str]| {
        let joined = rest.join(" ");
        let unquoted = joined.trim_matches(|c| c == '\'' || c == '"').to_string();
        (!unquoted.is_empty()).then_some(unquoted)
    };
    match (first.as_str(), rest.as_slice()) {
        ("help", []) => Some(CliCommand::Help),
        ("exit" | "quit", []) => Some(CliCommand::Exit),
        ("clear", []) => Some(CliCommand::Clear),
        ("history", []) => Some(CliCommand::History),
        ("version", []) => Some(CliCommand::Version),
        ("server", rest) if rest.len() <= 1 => Some(CliCommand::Server(argument(rest))),
        ("output", rest) if rest.len() <= 1 => Some(CliCommand::Output(argument(rest))),
        ("spool", rest) if rest.len() == 1 => argument(rest).map(CliCommand::Spool),
        ("run", [script, rest @ ..]) if script.eq_ignore_ascii_case("script") => {
            argument(rest).map(CliCommand::RunScript)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_complete_at_a_semicolon_outside_quotes_and_comments() {
        assert!(is_complete("SHOW STREAMS;"));
        assert!(is_complete(
            "CREATE STREAM s (a INT)\n  WITH (kafka_topic='s');\n"
        ));
        assert!(!is_complete("CREATE STREAM s (a INT)"));
        assert!(!is_complete("SELECT 'a;"));
        assert!(!is_complete("SELECT 'it''s;'"));
        assert!(is_complete("SELECT 'it''s;';"));
        assert!(!is_complete("SHOW STREAMS -- ;"));
        assert!(is_complete("SHOW STREAMS; -- done"));
        assert!(!is_complete("SHOW STREAMS /* ; */"));
        assert!(is_complete("-- only a comment"));
        assert!(is_complete(""));
    }

    #[test]
    fn shell_commands_are_recognised_in_any_case() {
        assert_eq!(cli_command("EXIT"), Some(CliCommand::Exit));
        assert_eq!(cli_command("help;"), Some(CliCommand::Help));
        assert_eq!(
            cli_command("output json"),
            Some(CliCommand::Output(Some("json".into())))
        );
        assert_eq!(
            cli_command("RUN SCRIPT '/tmp/x.sql'"),
            Some(CliCommand::RunScript("/tmp/x.sql".into()))
        );
        assert_eq!(cli_command("server"), Some(CliCommand::Server(None)));
        assert_eq!(cli_command("SHOW STREAMS;"), None);
        assert_eq!(cli_command("exit now"), None);
    }
}
