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
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
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
/// archive is reported per item and the rest goes on. Only regular files
/// are read: a FIFO would hang the ingest and a device never ends, so
/// either, named or in a tree under an image's name, is that item's error.
pub fn discover(paths: &[PathBuf]) -> Result<(Vec<Candidate>, Vec<Unreadable>), CliError> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let meta = fs::metadata(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_dir() && !meta.is_file() {
            unreadable.push(Unreadable {
                filepath: path.display().to_string(),
                reason: not_regular(meta.file_type()),
            });
        } else if meta.is_dir() {
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
                    Ok(e)
                        if !e.file_type().is_dir()
                            && is_image_name(&e.file_name().to_string_lossy()) =>
                    {
                        unreadable.push(Unreadable {
                            filepath: e.path().display().to_string(),
                            reason: not_regular(e.file_type()),
                        })
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

/// What a file that is not a regular one is, for a person.
fn not_regular(kind: fs::FileType) -> String {
    let what = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    format!("{what}, not a regular file")
}

/// Opens `path` only if it is a regular file. The open does not block (a
/// FIFO swapped in after [`discover`] looked would otherwise wait for a
/// writer), and the check is made on the open file, so what is read is
/// what was checked.
fn open_regular(path: &Path) -> Result<fs::File, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok(file)
}

/// Reads at most `max_bytes` of `from`: what a header declares may lie,
/// and some regular files (under /proc) say 0 bytes yet never end.
fn read_capped(from: impl Read, declared: u64, max_bytes: u64) -> Result<Vec<u8>, String> {
    let too_big =
        |n: u64| format!("{n} bytes, over the {max_bytes}-byte limit of one gRPC message");
    if declared > max_bytes {
        return Err(too_big(declared));
    }
    let mut buf = Vec::with_capacity(declared as usize);
    from.take(max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max_bytes {
        return Err(format!(
            "more than {max_bytes} bytes, the limit of one gRPC message"
        ));
    }
    Ok(buf)
}

fn file_candidate(path: &Path) -> Candidate {
    Candidate {
        filepath: path.display().to_string(),
        location: Location::File(path.to_path_buf()),
    }
}

fn archive_entries(archive: &Path, found: &mut Vec<Candidate>, unreadable: &mut Vec<Unreadable>) {
    let opened =
        open_regular(archive).and_then(|f| zip::ZipArchive::new(f).map_err(|e| e.to_string()));
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
    /// The image's bytes, refusing anything over `max_bytes` without reading
    /// it, and anything that is not a regular file without opening it.
    pub fn read(&mut self, location: &Location, max_bytes: u64) -> Result<Vec<u8>, String> {
        match location {
            Location::File(path) => {
                let f = open_regular(path)?;
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                read_capped(f, len, max_bytes)
            }
            Location::ZipEntry { archive, name } => {
                if self.open.as_ref().is_none_or(|(p, _)| p != archive) {
                    let f = open_regular(archive)?;
                    let z = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
                    self.open = Some((archive.clone(), z));
                }
                let (_, zip) = self.open.as_mut().expect("just opened");
                let entry = zip.by_name(name).map_err(|e| e.to_string())?;
                let declared = entry.size();
                read_capped(entry, declared, max_bytes)
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

    fn fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success());
    }

    #[test]
    fn a_fifo_or_a_device_is_an_items_error_named_or_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        fifo(&tree.join("pipe.jpg"));
        std::os::unix::fs::symlink("/dev/zero", tree.join("zero.png")).unwrap();
        fs::write(tree.join("good.jpg"), b"jpg").unwrap();
        let named = dir.path().join("named.jpg");
        fifo(&named);
        let paths = [tree.clone(), named.clone(), PathBuf::from("/dev/zero")];
        let (found, bad) = discover(&paths).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let reasons: Vec<(String, String)> = bad
            .into_iter()
            .map(|u| (u.filepath.rsplit('/').next().unwrap().to_string(), u.reason))
            .collect();
        let fifo = "a FIFO (named pipe), not a regular file".to_string();
        let device = "a character device, not a regular file".to_string();
        assert_eq!(
            reasons,
            [
                ("pipe.jpg".into(), fifo.clone()),
                ("zero.png".into(), device.clone()),
                ("named.jpg".into(), fifo),
                ("zero".into(), device),
            ]
        );
    }

    #[test]
    fn reading_a_fifo_or_a_device_fails_at_once_instead_of_waiting_or_never_ending() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("pipe.jpg");
        fifo(&pipe);
        let err = read(&pipe.display().to_string(), 1 << 20).unwrap_err();
        assert!(err.contains("FIFO"), "{err}");
        let err = read("/dev/zero", 1 << 20).unwrap_err();
        assert!(err.contains("character device"), "{err}");
        let zip = dir.path().join("pipe.zip");
        fifo(&zip);
        let entry = Location::ZipEntry {
            archive: zip,
            name: "a.jpg".into(),
        };
        let err = Reader::default().read(&entry, 1 << 20).unwrap_err();
        assert!(err.contains("FIFO"), "{err}");
    }

    #[test]
    fn a_regular_file_that_never_ends_is_read_only_to_the_limit() {
        // /proc files say 0 bytes; this one is a few KiB, over a 100-byte cap.
        let err = read("/proc/self/maps", 100).unwrap_err();
        assert!(err.contains("more than 100 bytes"), "{err}");
    }

    #[test]
    fn a_missing_path_is_a_usage_error() {
        let err = discover(&[PathBuf::from("/no/such/dir")]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
