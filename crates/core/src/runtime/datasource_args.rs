//! The flag that confines `file` DataSources, shared by the global and zone binaries.

use std::path::PathBuf;

use crate::datasource::FileDirs;

#[derive(Clone, Debug, Default, clap::Args, serde::Serialize)]
pub struct DataSourceArgs {
    /// A directory on this host from which `file` DataSources (Vault tokens, client certificates,
    /// provided CAs) may be read; repeat the flag or separate with commas. Files elsewhere, and
    /// every `file` DataSource when no directory is given, are refused.
    #[arg(
        long = "datasource-file-dir",
        env = "MESHPLANE_DATASOURCE_FILE_DIR",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub datasource_file_dir: Vec<PathBuf>,
}

impl DataSourceArgs {
    /// The allowed directories, checked now so a typo stops the start instead of every Mesh.
    pub fn file_dirs(&self) -> Result<FileDirs, String> {
        FileDirs::new(&self.datasource_file_dir).map_err(|e| format!("--datasource-file-dir {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_directory_names_the_flag() {
        let args = DataSourceArgs {
            datasource_file_dir: vec!["/nonexistent-meshplane".into()],
        };
        let e = args.file_dirs().expect_err("missing directory");
        assert!(
            e.starts_with("--datasource-file-dir \"/nonexistent-meshplane\""),
            "{e}"
        );
    }
}
