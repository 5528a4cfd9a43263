//! Candidates for completion of SERVICE arguments: the Compose files are loaded as the
//! command line being typed names them (`-f`, `--project-directory`, `--env-file`,
//! `--profile`), quietly, nothing if they do not load.

use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use std::path::PathBuf;

/// Candidates for a SERVICE argument.
pub fn services() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        // The words being completed follow `--` (`rcompose -- rcompose -f x.yaml up w`).
        let words: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
        service_names(&words)
            .into_iter()
            .map(CompletionCandidate::new)
            .collect()
    })
}

/// The project options among `words` (the command line so far).
fn global_from(words: &[String]) -> crate::global::Global {
    let mut g = crate::global::Global {
        files: Vec::new(),
        project_name: None,
        project_directory: None,
        env_files: Vec::new(),
        profile: Vec::new(),
        ansi: crate::global::Ansi::Never,
        progress: crate::global::Progress::Quiet,
        log_level: crate::global::LogLevel::Error,
        parallel: None,
        dry_run: false,
        compatibility: false,
    };
    let mut it = words.iter().skip(1).peekable();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (w.as_str(), None),
        };
        if !matches!(
            flag,
            "-f" | "--file" | "-p" | "--project-name" | "--project-directory" | "--env-file" | "--profile"
        ) {
            continue;
        }
        let Some(v) = inline.or_else(|| it.next().cloned()) else {
            break;
        };
        match flag {
            "-f" | "--file" => g.files.push(PathBuf::from(v)),
            "-p" | "--project-name" => g.project_name = Some(v),
            "--project-directory" => g.project_directory = Some(PathBuf::from(v)),
            "--env-file" => g.env_files.push(PathBuf::from(v)),
            _ => g.profile.push(v),
        }
    }
    g
}

/// The services of the project `words` point at; none when it does not load.
pub fn service_names(words: &[String]) -> Vec<String> {
    let g = global_from(words);
    let Ok(opts) = crate::project::load_options(&g) else {
        return Vec::new();
    };
    match compose::load(&opts) {
        Ok(l) => l.project.services.keys().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn project_options_are_taken_from_the_words_typed() {
        let g = global_from(&words(
            "rcompose -f a.yaml --file=b.yaml -p x --profile debug up --env-file e --project-directory d web",
        ));
        assert_eq!(g.files, vec![PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
        assert_eq!(g.project_name.as_deref(), Some("x"));
        assert_eq!(g.profile, vec!["debug".to_string()]);
        assert_eq!(g.env_files, vec![PathBuf::from("e")]);
        assert_eq!(g.project_directory, Some(PathBuf::from("d")));
        // A flag still waiting for its value is no harm.
        assert!(global_from(&words("rcompose -f")).files.is_empty());
    }
}
