//! Images: a content-addressed store of OCI blobs and unpacked layers, filled by
//! registry pulls, `docker save`/OCI archives, and root filesystem imports.

pub mod archive;
pub mod config;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod fetch;
pub mod import;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use config::ImageConfigFile;
pub use digest::Digest;
pub use reference::ImageRef;
pub use store::{ImageRecord, Store, StoreError};

/// OCI and Docker media types.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}
