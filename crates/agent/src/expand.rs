//! `$(VAR)` expansion in container `env` values, `command` and `args`, with upstream's rules:
//!
//! - `$(NAME)` becomes the value of `NAME`; a name that is not defined stays as written,
//!   `$(NAME)`;
//! - `$$` is an escaped `$`, so `$$(NAME)` is the literal text `$(NAME)`;
//! - any other `$`, and a `$(` with no closing `)`, stay as written.
//!
//! Env values see the variables defined before them in the container's list (and the
//! outer ones, such as service variables), never later ones ([`crate::env`]); `command`
//! and `args` see the container's whole environment.

use std::collections::HashMap;

/// `input` with every `$(NAME)` that `lookup` knows replaced by its value.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            // `$$`: an escaped operator.
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // No closing parenthesis: the text stays as it is.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            // A `$` that starts no reference (or ends the input) stays.
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `command` or `args` expanded against a container's environment.
pub fn command_line(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    words.iter().map(|w| expand(w, |n| vars.get(n).copied())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<&'static str> {
        let vars: HashMap<&'static str, &'static str> = vars.iter().copied().collect();
        move |n| vars.get(n).copied()
    }

    #[test]
    fn references_escapes_and_leftovers_follow_upstream() {
        let vars = with(&[("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(EMPTY)x", "x"),
            // Undefined names stay as written.
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$()", "$()"),
            // Escapes.
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$", "$"),
            // Operators that start no reference.
            ("$VAR_A", "$VAR_A"),
            ("a$", "a$"),
            ("$", "$"),
            ("$a$(VAR_A)", "$aA"),
            // Unclosed references.
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_A $(VAR_B)", "$(VAR_A $(VAR_B)"),
            // Text around, multi-byte characters included.
            ("héllo $(VAR_A) wörld", "héllo A wörld"),
            ("$é", "$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars), want, "{input:?}");
        }
    }

    #[test]
    fn commands_and_args_see_the_whole_environment() {
        let env: Vec<(String, String)> = [("NODE", "node3"), ("GREETING", "hi")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let words = [
            "sh".to_string(),
            "-c".to_string(),
            "echo $(GREETING) $(NODE) $$(NODE) $(MISSING)".to_string(),
        ];
        assert_eq!(
            command_line(&words, &env),
            ["sh", "-c", "echo hi node3 $(NODE) $(MISSING)"]
        );
    }
}
