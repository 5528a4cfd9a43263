//! The labels Docker Compose puts on its containers, read back by `ps`, `ls` and the
//! engine's own bookkeeping (names as Compose v2 writes them).

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_WORKDIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_FILES: &str = "com.docker.compose.project.config_files";
/// The version of the tool that made the container (Compose writes its own).
pub const LABEL_VERSION: &str = "com.docker.compose.version";
