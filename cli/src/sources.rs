//! Where images come from: files, directory trees and `.zip` archives.
//!
//! An image's `filepath` in the collection is the path the user gave, joined
//! with its place in the tree (as the tutorial's glob gives it). An image
//! inside an archive is `archive.zip!/inner/path.jpg`, the form Java's jar
//! URLs use, so that a search result can be opened again by the same rule
//! ([`read`]).

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use crate::error::CliError;

/// Extensions taken from directories and archives, compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Separates an archive's path from an entry's name in a filepath.
pub const ARCHIVE_SEPARATOR: &str = "!/";

/// One image to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What the collection's `filepath` field will hold.
    pub filepath: String,
    pub location: Location,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    ZipEntry { archive: PathBuf, name: String },
}

/// Something found while looking for images that cannot be ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub filepath: String,
    pub reason: String,
}

pub fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn is_zip(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// The images under `paths`: directories walked recursively (sorted by name,
/// symlinks followed), `.zip` archives read, other files taken as images.
/// A path that does not exist is a usage error; trouble inside a tree or an
/// archive is reported per item and the rest goes on.
pub fn discover(paths: &[PathBuf]) -> Result<(Vec<Candidate>, Vec<Unreadable>), CliError> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let meta = fs::metadata(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
            {
                match entry {
                    Ok(e) if e.file_type().is_file() => {
                        let p = e.path();
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if is_zip(p) {
                            archive_entries(p, &mut found, &mut unreadable);
                        } else if is_image_name(name) {
                            found.push(file_candidate(p));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => unreadable.push(Unreadable {
                        filepath: e.path().map_or_else(
                            || path.display().to_string(),
                            |p| p.display().to_string(),
                        ),
                        reason: e.to_string(),
                    }),
                }
            }
        } else if is_zip(path) {
            archive_entries(path, &mut found, &mut unreadable);
        } else {
            found.push(file_candidate(path));
        }
    }
    Ok((found, unreadable))
}

fn file_candidate(path: &Path) -> Candidate {
    Candidate {
        filepath: path.display().to_string(),
        location: Location::File(path.to_path_buf()),
    }
}

fn archive_entries(archive: &Path, found: &mut Vec<Candidate>, unreadable: &mut Vec<Unreadable>) {
    let opened = fs::File::open(archive)
        .map_err(|e| e.to_string())
        .and_then(|f| zip::ZipArchive::new(f).map_err(|e| e.to_string()));
    let zip = match opened {
        Ok(z) => z,
        Err(reason) => {
            unreadable.push(Unreadable {
                filepath: archive.display().to_string(),
                reason: format!("not a readable zip archive: {reason}"),
            });
            return;
        }
    };
    let mut names: Vec<&str> = zip
        .file_names()
        .filter(|n| !n.ends_with('/') && is_image_name(n))
        .collect();
    names.sort_unstable();
    for name in names {
        found.push(Candidate {
            filepath: format!("{}{ARCHIVE_SEPARATOR}{name}", archive.display()),
            location: Location::ZipEntry {
                archive: archive.to_path_buf(),
                name: name.to_string(),
            },
        });
    }
}

/// Reads candidates' bytes, keeping the last archive open between entries.
#[derive(Default)]
pub struct Reader {
    open: Option<(PathBuf, zip::ZipArchive<fs::File>)>,
}

impl Reader {
    /// The image's bytes, refusing anything over `max_bytes` without reading it.
    pub fn read(&mut self, location: &Location, max_bytes: u64) -> Result<Vec<u8>, String> {
        let too_big =
            |n: u64| format!("{n} bytes, over the {max_bytes}-byte limit of one gRPC message");
        match location {
            Location::File(path) => {
                let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                if len > max_bytes {
                    return Err(too_big(len));
                }
                let mut buf = Vec::with_capacity(len as usize);
                f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
                Ok(buf)
            }
            Location::ZipEntry { archive, name } => {
                if self.open.as_ref().is_none_or(|(p, _)| p != archive) {
                    let f = fs::File::open(archive).map_err(|e| e.to_string())?;
                    let z = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
                    self.open = Some((archive.clone(), z));
                }
                let (_, zip) = self.open.as_mut().expect("just opened");
                let mut entry = zip.by_name(name).map_err(|e| e.to_string())?;
                if entry.size() > max_bytes {
                    return Err(too_big(entry.size()));
                }
                let mut buf = Vec::with_capacity(entry.size() as usize);
                // The declared size may lie: never read past the limit.
                (&mut entry)
                    .take(max_bytes + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| e.to_string())?;
                if buf.len() as u64 > max_bytes {
                    return Err(too_big(buf.len() as u64));
                }
                Ok(buf)
            }
        }
    }
}

/// Where a stored `filepath` points: a file, or an entry of a `.zip` archive.
pub fn locate(filepath: &str) -> Location {
    if let Some((archive, name)) = filepath.split_once(ARCHIVE_SEPARATOR) {
        let archive = PathBuf::from(archive);
        if is_zip(&archive) && archive.is_file() {
            return Location::ZipEntry {
                archive,
                name: name.to_string(),
            };
        }
    }
    Location::File(PathBuf::from(filepath))
}

/// Reads the image a stored `filepath` names.
pub fn read(filepath: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    Reader::default().read(&locate(filepath), max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
        for (name, data) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image_name("a/B.JPG"));
        assert!(is_image_name("x.Tiff"));
        assert!(is_image_name("x.webp"));
        assert!(!is_image_name("notes.txt"));
        assert!(!is_image_name("jpg"));
    }

    #[test]
    fn trees_and_archives_are_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/z.PNG"), b"png").unwrap();
        fs::write(root.join("a.jpg"), b"jpg").unwrap();
        fs::write(root.join("readme.txt"), b"text").unwrap();
        write_zip(
            &root.join("pack.zip"),
            &[("in/x.jpeg", b"x"), ("in/notes.md", b"no"), ("y.gif", b"y")],
        );
        fs::write(root.join("broken.zip"), b"not a zip").unwrap();

        let (found, bad) = discover(&[root.to_path_buf()]).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|c| {
                c.filepath
                    .strip_prefix(&format!("{}/", root.display()))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "a.jpg",
                "b/c/z.PNG",
                "pack.zip!/in/x.jpeg",
                "pack.zip!/y.gif"
            ]
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].filepath.ends_with("broken.zip"));

        // Every found filepath reads back by the same rule a search hit uses.
        let mut reader = Reader::default();
        for c in &found {
            assert_eq!(locate(&c.filepath), c.location);
            assert_eq!(
                read(&c.filepath, 1 << 20).unwrap(),
                reader.read(&c.location, 1 << 20).unwrap()
            );
        }
        assert_eq!(read(&found[2].filepath, 1 << 20).unwrap(), b"x");
    }

    #[test]
    fn oversize_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.jpg");
        fs::write(&big, vec![0u8; 1000]).unwrap();
        let err = read(&big.display().to_string(), 999).unwrap_err();
        assert!(err.contains("1000 bytes"), "{err}");
        let zip = dir.path().join("p.zip");
        write_zip(&zip, &[("big.jpg", &[0u8; 1000])]);
        let err = read(&format!("{}!/big.jpg", zip.display()), 999).unwrap_err();
        assert!(err.contains("over"), "{err}");
    }

    #[test]
    fn a_missing_path_is_a_usage_error() {
        let err = discover(&[PathBuf::from("/no/such/dir")]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
