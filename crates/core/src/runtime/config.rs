//! Configuration shared by every binary: the common flags, and merging a YAML config file under the
//! flags and environment variables (flag > `MESHPLANE_*` env > config file > default).

use std::{ffi::OsString, path::PathBuf};

use clap::{ArgAction, parser::ValueSource};
use serde_json::Value;

use super::telemetry::LogFormat;

/// Flags every Meshplane server binary takes.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct CommonArgs {
    /// A YAML file whose keys are flag names (for example `api-addr: 127.0.0.1:5681`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "MESHPLANE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "MESHPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter: a level (`info`, `debug`) or `tracing` directives (`info,meshplane_kds=debug`).
    #[arg(
        long,
        env = "MESHPLANE_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

impl ConfigError {
    /// Prints the error the way clap would (help and version go to stdout with exit 0) and exits.
    pub fn exit(self) -> ! {
        match self {
            Self::Clap(e) => e.exit(),
            Self::File { .. } => {
                eprintln!("error: {self}");
                std::process::exit(2)
            }
        }
    }
}

/// Parses the process arguments, merging the `--config` file if one is named.
pub fn parse<P: clap::Parser>() -> Result<P, ConfigError> {
    parse_from(std::env::args_os())
}

/// Like [`parse`], from explicit arguments (for tests).
pub fn parse_from<P: clap::Parser, I: IntoIterator<Item = T>, T: Into<OsString> + Clone>(
    args: I,
) -> Result<P, ConfigError> {
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = P::command();
    let matches = cmd.clone().try_get_matches_from(&argv)?;

    // Find the innermost subcommand: the config file fills its flags.
    let mut cmd_ref = &cmd;
    let mut m = &matches;
    while let Some((name, sub_m)) = m.subcommand() {
        match cmd_ref.find_subcommand(name) {
            Some(c) => cmd_ref = c,
            None => break,
        }
        m = sub_m;
    }
    let Some(path) = m.try_get_one::<PathBuf>("config").ok().flatten().cloned() else {
        return Ok(P::from_arg_matches(&matches)?);
    };
    let file_err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
    let doc = crate::format::parse_yaml(&text).map_err(|e| file_err(e.to_string()))?;
    let Value::Object(entries) = doc else {
        return Err(file_err("must be a map of flag names to values".into()));
    };

    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in entries {
        let Some(arg) = cmd_ref
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            let mut known: Vec<&str> = cmd_ref
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| *l != "help" && *l != "config")
                .collect();
            known.sort_unstable();
            return Err(file_err(format!(
                "unknown key {key:?} (known: {})",
                known.join(", ")
            )));
        };
        let id = arg.get_id().as_str();
        if matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = match value {
            Value::Array(items) => items,
            v => vec![v],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => continue,
                other => {
                    return Err(file_err(format!(
                        "key {key:?}: expected a scalar or a list of scalars, got {other}"
                    )));
                }
            };
            match arg.get_action() {
                ArgAction::SetTrue => {
                    if text == "true" {
                        extra.push(format!("--{key}").into());
                    } else if text != "false" {
                        return Err(file_err(format!(
                            "key {key:?}: expected true or false, got {text:?}"
                        )));
                    }
                }
                _ => extra.push(format!("--{key}={text}").into()),
            }
        }
    }
    let mut merged = argv;
    merged.extend(extra);
    let matches = P::command()
        .try_get_matches_from(&merged)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ConfigError::Clap(e)
            }
            _ => file_err(format!(
                "a value from the file was refused: {}",
                e.render().to_string().trim()
            )),
        })?;
    Ok(P::from_arg_matches(&matches)?)
}

/// Query parameters of a PostgreSQL URL that carry a password (libpq and sqlx accept both).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// Hides the passwords of a database URL for logs: the userinfo one and those in the query.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<unparseable URL>".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("REDACTED"));
    }
    if u.query_pairs()
        .any(|(k, _)| SECRET_PARAMS.contains(&k.as_ref()))
    {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_ref()) {
                    "REDACTED".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Cmd {
        Run(RunArgs),
    }

    #[derive(clap::Args, Debug)]
    struct RunArgs {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(
            long,
            env = "MESHPLANE_TEST_API_ADDR",
            default_value = "127.0.0.1:5681"
        )]
        api_addr: std::net::SocketAddr,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        verbose_thing: bool,
    }

    fn run(args: &[&str]) -> Result<RunArgs, ConfigError> {
        let mut v = vec!["bin", "run"];
        v.extend_from_slice(args);
        parse_from::<Cli, _, _>(v).map(|c| match c.cmd {
            Cmd::Run(r) => r,
        })
    }

    #[test]
    fn file_fills_flags_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "api-addr: 127.0.0.1:9999\nzone: east\nverbose-thing: true\nlog-format: json\n",
        )
        .expect("write");
        let r = run(&["--config", f.to_str().expect("utf8")]).expect("parses");
        assert_eq!(r.api_addr.port(), 9999);
        assert_eq!(r.zone.as_deref(), Some("east"));
        assert!(r.verbose_thing);
        assert_eq!(r.common.log_format, LogFormat::Json);
        let r = run(&["--config", f.to_str().expect("utf8"), "--zone", "west"]).expect("parses");
        assert_eq!(
            r.zone.as_deref(),
            Some("west"),
            "the flag wins over the file"
        );
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "api-adr: 1\n").expect("write");
        let e = run(&["--config", f.to_str().expect("utf8")])
            .expect_err("unknown key")
            .to_string();
        assert!(
            e.contains("unknown key \"api-adr\"") && e.contains("api-addr"),
            "{e}"
        );
        std::fs::write(&f, "api-addr: not-an-address\n").expect("write");
        let e = run(&["--config", f.to_str().expect("utf8")])
            .expect_err("bad value")
            .to_string();
        assert!(e.contains("--api-addr"), "{e}");
        let e = run(&["--api-addr", "nope"])
            .expect_err("bad flag")
            .to_string();
        assert!(e.contains("--api-addr"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:REDACTED@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let r = redact_url("postgres://u@h/db?sslmode=require&password=s3cr%20t&sslpassword=k");
        assert!(!r.contains("s3cr") && !r.contains("=k"), "{r}");
        assert!(
            r.contains("sslmode=require") && r.contains("password=REDACTED"),
            "{r}"
        );
        assert_eq!(redact_url("not a url"), "<unparseable URL>");
    }
}
