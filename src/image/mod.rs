//! Images where they live before a pull: in registries, or wherever
//! skopeo's image proxy reads them.
//!
//! - [`reference`]: image references as podman reads them.
//! - [`registries_conf`]: registries.conf (short names, mirrors, rewrites).
//! - [`auth`]: credentials from auth files and flags.
//! - [`manifest`]: OCI and Docker manifests, indexes and configs.
//! - [`platform`]: choosing one platform of an index.
//! - [`registry`]: the registry client (transports, retries, caps).
//! - [`resolved`]: what either source resolves an image to, and the
//!   image-level errors both find.
//! - [`source`]: the one interface blobs stream through, whatever the source.
//! - [`resolve`]: index -> nested index -> platform -> manifest -> config,
//!   written once for every source.
//! - [`inspect`]: an image on its registry, resolved for one platform.
//! - [`local`]: images in files (`oci:`, `oci-archive:`, `docker-archive:`), read natively.
//! - [`proxy`]: skopeo's image proxy as a second source.

pub mod auth;
pub mod compression;
pub mod inspect;
pub mod local;
pub mod manifest;
pub mod platform;
pub mod proxy;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod resolve;
pub mod resolved;
pub mod source;
