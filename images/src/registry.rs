//! Pulling images from OCI/Docker registries with oci-client: manifest lists and OCI
//! indexes resolved to the host's platform, token auth (oci-client), credentials from
//! `~/.docker/config.json`, plain HTTP only for loopback registries, layers downloaded
//! in parallel and each digest-checked before it enters the store.

use super::digest::Digest;
use super::manifest::{self, Parsed};
use super::media;
use super::reference::ImageRef;
use super::store::{ImageRecord, Store, StoreError};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use std::sync::Arc;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{image}: {message}")]
    Registry { image: String, message: String },
    #[error("{image}: {source}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
}

/// Progress of one pull, for the terminal.
#[derive(Debug, Clone)]
pub enum Progress {
    Resolved {
        image: String,
        manifest: Digest,
    },
    LayerExists {
        layer: Digest,
    },
    /// Bytes of a layer received so far (sent every few hundred kilobytes).
    LayerProgress {
        layer: Digest,
        done: u64,
        total: u64,
    },
    LayerDownloaded {
        layer: Digest,
        size: u64,
    },
    Done {
        image: String,
        id: Digest,
    },
}

fn client_for(r: &ImageRef) -> Client {
    // reqwest is built without a TLS crypto provider (to avoid aws-lc); use ring. An
    // error here only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if r.is_local_registry() {
        ClientProtocol::HttpsExcept(vec![r.registry().to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..Default::default()
    })
}

const ACCEPT: &[&str] = &[
    media::OCI_INDEX,
    media::DOCKER_LIST,
    media::OCI_MANIFEST,
    media::DOCKER_MANIFEST,
];

/// Pulls one image into the store and tags it with `r`.
pub async fn pull(
    store: Arc<Store>,
    r: &ImageRef,
    auth: RegistryAuth,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ImageRecord, PullError> {
    let image = r.full();
    let reg = |message: String| PullError::Registry {
        image: image.clone(),
        message,
    };
    let st = |source: StoreError| PullError::Store {
        image: image.clone(),
        source,
    };
    let client = client_for(r);
    let (mut bytes, _) = client
        .pull_manifest_raw(r.oci(), &auth, ACCEPT)
        .await
        .map_err(|e| reg(e.to_string()))?;
    let mut mdigest = Digest::of(&bytes);
    if let Some(want) = r.digest() {
        if mdigest.as_str() != want {
            return Err(reg(format!(
                "manifest digest mismatch: asked for {want}, got {mdigest}"
            )));
        }
    }
    let manifest = loop {
        match manifest::parse(&bytes).map_err(reg)? {
            Parsed::Manifest(m) => break m,
            Parsed::Index(i) => {
                let d = manifest::select_host(&i)
                    .ok_or_else(|| reg("no manifest for this platform in the image index".into()))?;
                let want = Digest::parse(&d.digest)
                    .ok_or_else(|| reg(format!("invalid digest {:?} in the index", d.digest)))?;
                let by_digest = r.oci().clone_with_digest(want.to_string());
                let (b, _) = client
                    .pull_manifest_raw(&by_digest, &auth, ACCEPT)
                    .await
                    .map_err(|e| reg(e.to_string()))?;
                mdigest = Digest::of(&b);
                if mdigest != want {
                    return Err(reg(format!("manifest digest mismatch: expected {want}, got {mdigest}")));
                }
                bytes = b;
            }
        }
    };
    progress(Progress::Resolved {
        image: image.clone(),
        manifest: mdigest.clone(),
    });
    store.put_blob(&bytes, Some(&mdigest)).map_err(st)?;

    let config = Digest::parse(&manifest.config.digest)
        .ok_or_else(|| reg(format!("invalid config digest {:?}", manifest.config.digest)))?;
    if !store.has_blob(&config) {
        let mut buf = Vec::new();
        client
            .pull_blob(r.oci(), config.as_str(), &mut buf)
            .await
            .map_err(|e| reg(format!("config {config}: {e}")))?;
        store.put_blob(&buf, Some(&config)).map_err(st)?;
    }

    let layers: Vec<(Digest, String, u64)> = manifest
        .layers
        .iter()
        .map(|l| {
            Digest::parse(&l.digest)
                .map(|d| (d, l.media_type.clone(), l.size))
                .ok_or_else(|| reg(format!("invalid layer digest {:?}", l.digest)))
        })
        .collect::<Result<_, _>>()?;
    stream::iter(layers.clone())
        .map(|(d, _, size)| {
            let (client, store, auth) = (&client, store.clone(), &auth);
            async move {
                if store.has_blob(&d) {
                    progress(Progress::LayerExists { layer: d.clone() });
                    return Ok(());
                }
                let tmp = store.tmp_file("pull");
                let res = async {
                    client.store_auth_if_needed(r.registry(), auth).await;
                    let mut file = tokio::fs::File::create(&tmp)
                        .await
                        .map_err(|e| reg(format!("{}: {e}", tmp.display())))?;
                    let mut blob = client
                        .pull_blob_stream(r.oci(), d.as_str())
                        .await
                        .map_err(|e| reg(format!("layer {d}: {e}")))?;
                    let (mut done, mut reported) = (0u64, 0u64);
                    while let Some(chunk) = blob.stream.next().await {
                        let chunk = chunk.map_err(|e| reg(format!("layer {d}: {e}")))?;
                        file.write_all(&chunk)
                            .await
                            .map_err(|e| reg(format!("{}: {e}", tmp.display())))?;
                        done += chunk.len() as u64;
                        if done - reported >= 256 * 1024 {
                            reported = done;
                            progress(Progress::LayerProgress {
                                layer: d.clone(),
                                done,
                                total: size,
                            });
                        }
                    }
                    file.sync_all()
                        .await
                        .map_err(|e| reg(format!("{}: {e}", tmp.display())))?;
                    drop(file);
                    let (store2, tmp2, d2) = (store.clone(), tmp.clone(), d.clone());
                    tokio::task::spawn_blocking(move || store2.adopt(&tmp2, &d2))
                        .await
                        .map_err(|e| reg(e.to_string()))?
                        .map_err(st)
                }
                .await;
                let _ = std::fs::remove_file(&tmp);
                res?;
                progress(Progress::LayerDownloaded { layer: d, size });
                Ok::<(), PullError>(())
            }
        })
        .buffer_unordered(3)
        .try_collect::<Vec<()>>()
        .await?;

    let r2 = r.clone();
    let rec = tokio::task::spawn_blocking(move || store.commit(&mdigest, &config, &layers, std::slice::from_ref(&r2)))
        .await
        .map_err(|e| reg(e.to_string()))?
        .map_err(st)?;
    progress(Progress::Done {
        image: image.clone(),
        id: rec.config.clone(),
    });
    Ok(rec)
}
