//! The `--strict-names` flag, shared by the global and zone binaries.

#[derive(Clone, Debug, Default, clap::Args, serde::Serialize)]
pub struct NameArgs {
    /// Refuse Mesh and Zone names that are not RFC 1035 labels (a letter first, then lower-case
    /// letters, digits and '-', at most 63), Kuma's newer rule. Off, such names are accepted with
    /// Kuma's deprecation warning in the answer.
    #[arg(long, env = "MESHPLANE_STRICT_NAMES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub strict_names: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        names: NameArgs,
    }

    #[test]
    fn off_by_default_and_on_with_the_bare_flag_or_a_value() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
                .map(|c| c.names.strict_names)
        };
        assert_eq!(parse(&[]).ok(), Some(false));
        assert_eq!(parse(&["--strict-names"]).ok(), Some(true));
        assert_eq!(parse(&["--strict-names=false"]).ok(), Some(false));
        assert_eq!(parse(&["--strict-names", "true"]).ok(), Some(true));
        assert!(parse(&["--strict-names=maybe"]).is_err());
    }
}
