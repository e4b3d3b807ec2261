//! A stored row's image, for the search page's thumbnails:
//! `GET /v1/collections/{collection}/media?filepath=P`.
//!
//! A filepath is text a caller chose at insert time, so serving it is
//! serving an attacker's path. It is served only when all of these hold
//! (with `DIR/TENANT/` as the root for a key confined to a tenant):
//! the caller may read the collection and a row holds exactly that
//! filepath (asked through the same FindFilepaths call as gRPC); it is
//! relative, with no `..`; its resolved path (symlinks followed) lies
//! inside the canonical `--media-root`, and the file opened still does (a
//! directory swapped for a link between the check and the open is caught);
//! the file, opened without following a last symlink and without blocking
//! on a FIFO, is a regular file no larger than [`MEDIA_MAX_BYTES`]; and its
//! first bytes are an image a browser shows. Nothing is opened before the
//! path checks pass, and the body streams from the file, so a call holds a
//! few KiB however large the image.

use std::{
    fs::File,
    io::{Read, Seek},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Component, Path, PathBuf},
};

use axum::{
    body::Body,
    extract::Query,
    http::{header, HeaderMap, HeaderValue, Request, StatusCode},
    response::{IntoResponse, Response},
};
use imgsearch_proto::{
    limits::{FILEPATH_MAX_BYTES, MEDIA_MAX_BYTES},
    v1::FindFilepathsRequest,
};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tonic::Status;

use super::{
    backend::{self, Backend},
    problem::Problem,
};
use crate::auth::guard::Guard;

/// Where stored images are served from.
#[derive(Debug, Clone)]
pub struct MediaRoot(PathBuf);

impl MediaRoot {
    /// `dir`, resolved once: every served path must resolve inside it.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("--media-root {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("--media-root {}: not a directory", dir.display()));
        }
        Ok(Self(root))
    }
}

impl MediaRoot {
    /// Where a caller's images are: a key confined to a tenant sees only
    /// `DIR/TENANT/`, since any writer can store any filepath and tenants
    /// share the directory; another key sees all of `DIR`.
    fn scoped(&self, tenant: Option<&str>) -> Result<MediaRoot, Problem> {
        let Some(tenant) = tenant else {
            return Ok(self.clone());
        };
        let refused = || {
            Problem::from(Status::not_found(format!(
                "tenant {tenant:?} has no directory in the media root"
            )))
        };
        // Key names allow `.` and `..`, which name no directory of theirs.
        if matches!(tenant, "." | "..") || tenant.contains('/') {
            return Err(refused());
        }
        // Not a link: a tenant's directory linked to another's would serve
        // that one's images.
        let dir = self.0.join(tenant);
        if dir.canonicalize().ok().as_ref() != Some(&dir) || !dir.is_dir() {
            return Err(refused());
        }
        Ok(MediaRoot(dir))
    }
}

#[derive(Deserialize)]
struct MediaQuery {
    filepath: Option<String>,
}

/// What the media route needs of the gateway.
pub struct Media<'a> {
    pub backend: &'a Backend,
    /// The key check, for the tenant a caller is confined to.
    pub guard: &'a Guard,
    pub root: Option<&'a MediaRoot>,
}

impl Media<'_> {
    /// Answers a media request for `collection`.
    pub async fn answer(
        &self,
        collection: &str,
        request: Request<Body>,
    ) -> Result<Response, Problem> {
        let filepath = Query::<MediaQuery>::try_from_uri(request.uri())
            .map_err(|e| Problem::invalid(format!("the query: {e}")))?
            .0
            .filepath
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Problem::invalid("give the image's stored filepath: ?filepath=P"))?;
        if filepath.len() > FILEPATH_MAX_BYTES {
            return Err(Problem::invalid(format!(
                "a filepath is at most {FILEPATH_MAX_BYTES} bytes"
            )));
        }
        stored(self.backend, request.headers(), collection, &filepath).await?;
        let root = self.root.ok_or_else(|| {
            Problem::from(Status::failed_precondition(
                "this gateway serves no images: it was started without --media-root",
            ))
        })?;
        // The call above passed this check; asked again for the tenant.
        let caller = self.guard.check("FindFilepaths", request.headers())?;
        let relative = relative(&filepath).map_err(Problem::invalid)?;
        let root = root.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_inside(&root.scoped(caller.tenant.as_deref())?, &relative)
        })
        .await
        .map_err(|e| Problem::from(Status::internal(format!("the media task failed: {e}"))))??;
        Ok(opened.into_response())
    }
}

/// Refuses a filepath no row holds, and a caller who may not read the
/// collection, with the status the gRPC call gives.
async fn stored(
    backend: &Backend,
    headers: &HeaderMap,
    collection: &str,
    filepath: &str,
) -> Result<(), Problem> {
    let asked = FindFilepathsRequest {
        collection: collection.to_owned(),
        filepaths: vec![filepath.to_owned()],
    };
    let found = backend
        .client()
        .find_filepaths(backend::request(headers, asked))
        .await?
        .into_inner()
        .found;
    if found.iter().any(|f| f == filepath) {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "no row of {collection:?} holds the filepath {filepath:?}"
        ))
        .into())
    }
}

/// `filepath` as a path below the root: relative, with no `..` and nothing
/// a path should not hold.
fn relative(filepath: &str) -> Result<PathBuf, String> {
    if filepath.chars().any(char::is_control) {
        return Err("the filepath holds a control character".into());
    }
    let path = Path::new(filepath);
    let mut below = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => below.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "the filepath {filepath:?} climbs with `..`: only paths below the media \
                     root are served"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "the filepath {filepath:?} is absolute: only paths relative to the media \
                     root are served"
                ))
            }
        }
    }
    if below.as_os_str().is_empty() {
        return Err("the filepath names no file".into());
    }
    Ok(below)
}

/// An image file ready to stream.
struct Opened {
    file: File,
    len: u64,
    content_type: &'static str,
}

/// Opens `relative` below `root`, if it resolves inside it and is an image
/// file within the size cap.
fn open_inside(root: &MediaRoot, relative: &Path) -> Result<Opened, Problem> {
    let missing = || {
        Problem::from(Status::not_found(format!(
            "{} is not in the media root",
            relative.display()
        )))
    };
    let resolved = root
        .0
        .join(relative)
        .canonicalize()
        .map_err(|_| missing())?;
    if !resolved.starts_with(&root.0) {
        return Err(Status::permission_denied(format!(
            "{} resolves outside the media root",
            relative.display()
        ))
        .into());
    }
    // A last-component symlink swapped in since is not followed, and a
    // FIFO does not block the open.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved)
        .map_err(|_| missing())?;
    // A directory above it may have been swapped for a link since the
    // check: what decides is where the opened file is.
    if !opened_inside(&file, &root.0) {
        return Err(Status::permission_denied(format!(
            "{} was moved outside the media root while being opened",
            relative.display()
        ))
        .into());
    }
    let meta = file.metadata().map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(Status::permission_denied(format!(
            "{} is not a regular file",
            relative.display()
        ))
        .into());
    }
    if meta.len() > MEDIA_MAX_BYTES {
        return Err(Status::out_of_range(format!(
            "{} holds {} bytes: images over {MEDIA_MAX_BYTES} bytes are not served",
            relative.display(),
            meta.len()
        ))
        .into());
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(missing()),
        }
    }
    let content_type = image_type(&head[..read]).ok_or_else(|| {
        Problem::from(Status::failed_precondition(format!(
            "{} is not a JPEG, PNG, GIF, WebP or BMP image",
            relative.display()
        )))
    })?;
    file.rewind().map_err(|_| missing())?;
    Ok(Opened {
        file,
        len: meta.len(),
        content_type,
    })
}

/// Whether the file behind `file` lies inside `root`, as the kernel names
/// it; false when that cannot be read, so an unconfirmed file is refused.
fn opened_inside(file: &File, root: &Path) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .is_ok_and(|path| path.starts_with(root))
}

/// The media type of an image a browser shows, from its first bytes; the
/// file's name says nothing.
fn image_type(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else if starts(b"BM") {
        Some("image/bmp")
    } else {
        None
    }
}

impl IntoResponse for Opened {
    fn into_response(self) -> Response {
        let file = tokio::fs::File::from_std(self.file).take(self.len);
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.len));
        // The bytes are the caller's: never sniffed into something a
        // browser runs, and not kept by shared caches.
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=300"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbing_and_absolute_filepaths_are_refused_before_any_lookup() {
        assert!(relative("../secret.jpg").is_err());
        assert!(relative("a/../../b.jpg").is_err());
        assert!(relative("/etc/passwd").is_err());
        assert!(relative("a\nb.jpg").is_err());
        assert!(relative("./").is_err());
        assert_eq!(
            relative("./train/cat.jpg").unwrap(),
            PathBuf::from("train/cat.jpg")
        );
    }

    #[test]
    fn tenants_named_like_directories_of_the_path_get_none() {
        let dir = std::env::temp_dir().join(format!("media-scoped-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme")).unwrap();
        std::os::unix::fs::symlink(dir.join("acme"), dir.join("linked")).unwrap();
        let root = MediaRoot::new(&dir).unwrap();
        assert!(root.scoped(Some("acme")).is_ok());
        for tenant in [".", "..", "linked", "absent"] {
            assert!(root.scoped(Some(tenant)).is_err(), "{tenant}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_opened_through_a_directory_swapped_for_a_link_is_refused() {
        let dir = std::env::temp_dir().join(format!("media-opened-{}", std::process::id()));
        let (root, outside) = (dir.join("root"), dir.join("outside"));
        std::fs::create_dir_all(root.join("train")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("train/cat.jpg"), b"inside").unwrap();
        std::fs::write(outside.join("cat.jpg"), b"secret").unwrap();
        let root = MediaRoot::new(&root).unwrap();
        let resolved = root.0.join("train/cat.jpg").canonicalize().unwrap();
        assert!(opened_inside(&File::open(&resolved).unwrap(), &root.0));
        // The path checked above now leads outside.
        std::fs::remove_dir_all(root.0.join("train")).unwrap();
        std::os::unix::fs::symlink(&outside, root.0.join("train")).unwrap();
        assert!(!opened_inside(&File::open(&resolved).unwrap(), &root.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(image_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg xmlns="), None);
        assert_eq!(image_type(b"RIFF\0\0\0\0WAVE"), None);
    }
}
