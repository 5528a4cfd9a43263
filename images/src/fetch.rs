//! `ADD <url>`: a file fetched over HTTP(S) into a build's scratch directory, with its
//! SHA-256 (checked against `--checksum` when given), its `Last-Modified` time and the
//! name it goes by (the URL path's last segment, as BuildKit names it). The download
//! has a size limit, and the name is checked before it touches the disk.

use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The most an `ADD` of a URL may download.
pub const MAX_DOWNLOAD: u64 = 8 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: larger than {limit} bytes")]
    TooBig { url: String, limit: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid checksum {0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("digest mismatch {want}: {got}")]
    Mismatch { want: String, got: String },
}

/// What was fetched.
#[derive(Debug)]
pub struct Fetched {
    /// The file, in the directory given.
    pub path: PathBuf,
    pub name: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    pub last_modified: Option<std::time::SystemTime>,
}

/// Whether an `ADD` source is a URL this fetches.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name a URL gives: its path's last segment, or BuildKit's `__unnamed__`.
pub fn name_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let last = path
        .split_once('/')
        .map_or("", |(_, p)| p)
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if last.is_empty() || last == "." || last == ".." {
        "__unnamed__".into()
    } else {
        last.to_string()
    }
}

/// Checks a `--checksum` value.
pub fn parse_checksum(c: &str) -> Result<String, FetchError> {
    match c.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", h.to_ascii_lowercase()))
        }
        _ => Err(FetchError::BadChecksum(c.into())),
    }
}

/// Fetches `url` into `dir` (as `download`), checking `checksum` when given.
pub async fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Fetched, FetchError> {
    let want = checksum.map(parse_checksum).transpose()?;
    // As for registries: ring as the TLS provider (an error: one is installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = |message: String| FetchError::Http {
        url: url.to_string(),
        message,
    };
    let client = reqwest::Client::builder().build().map_err(|e| http(e.to_string()))?;
    let mut resp = client.get(url).send().await.map_err(|e| http(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(http(format!("invalid response status {}", resp.status())));
    }
    let too_big = || FetchError::TooBig {
        url: url.to_string(),
        limit: MAX_DOWNLOAD,
    };
    if resp.content_length().is_some_and(|n| n > MAX_DOWNLOAD) {
        return Err(too_big());
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let path = dir.join("download");
    let io = |source| FetchError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&path).map_err(io)?;
    let mut h = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| http(e.to_string()))? {
        total += chunk.len() as u64;
        if total > MAX_DOWNLOAD {
            return Err(too_big());
        }
        h.update(&chunk);
        f.write_all(&chunk).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    let digest = format!("sha256:{:x}", h.finalize());
    if let Some(w) = want {
        if w != digest {
            return Err(FetchError::Mismatch { want: w, got: digest });
        }
    }
    Ok(Fetched {
        path,
        name: name_of(url),
        digest,
        last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checksums() {
        assert_eq!(name_of("https://example.com/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(name_of("http://example.com/"), "__unnamed__");
        assert_eq!(name_of("http://example.com"), "__unnamed__");
        assert_eq!(name_of("http://h/x/.."), "__unnamed__");
        assert!(parse_checksum("sha256:abc").is_err() && parse_checksum("md5:00").is_err());
        let ok = format!("sha256:{}", "A".repeat(64));
        assert_eq!(parse_checksum(&ok).unwrap(), format!("sha256:{}", "a".repeat(64)));
    }
}
