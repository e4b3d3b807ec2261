//! Paths of what `scripts/setup.sh` installed, under the repo's `.deps` link
//! (or `$IMGSEARCH_DEPS`). A missing piece panics with the command that
//! installs it: tests never skip silently.

use std::path::{Path, PathBuf};

/// The dependency cache root.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("IMGSEARCH_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps"));
    require(dir, "all")
}

/// Fails loudly when `path` is missing, naming the setup step.
pub fn require(path: PathBuf, component: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup.sh {}` first",
        path.display(),
        if component == "all" { "" } else { component }
    );
    path
}

/// The unpacked Milvus standalone (bin/, config.yaml.template, glog.conf).
pub fn milvus_home() -> PathBuf {
    require(root().join("milvus-2.3.5"), "milvus")
}

/// Seeded random ResNet50 weights (torchvision names, safetensors).
pub fn seeded_weights() -> PathBuf {
    require(root().join("weights/resnet50-seed0.safetensors"), "weights")
}

/// The reference Python with torch, torchvision, pillow and safetensors.
pub fn reference_python() -> PathBuf {
    require(root().join("venv-ref/bin/python"), "pyref")
}

/// The fixture JPEGs, sorted by name.
pub fn fixture_images() -> Vec<PathBuf> {
    let dir = require(root().join("fixtures/images"), "fixtures");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read fixtures")
        .map(|e| e.expect("fixture entry").path())
        .collect();
    files.sort();
    files
}

/// A script of the repo's `scripts/` folder.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// The real grpcurl binary.
pub fn grpcurl() -> PathBuf {
    require(root().join("bin/grpcurl"), "grpcurl")
}

/// openapi-spec-validator, which checks the HTTP API's OpenAPI document.
pub fn openapi_validator() -> PathBuf {
    require(root().join("venv-http/bin/openapi-spec-validator"), "http")
}

/// Debian's chromedriver, and the chromium binary it drives (the package's
/// own, not the `/usr/bin/chromium` launcher script), for the search page's
/// browser test.
pub fn chromium() -> (PathBuf, PathBuf) {
    (
        require(PathBuf::from("/usr/bin/chromedriver"), "browser"),
        require(PathBuf::from("/usr/lib/chromium/chromium"), "browser"),
    )
}

/// The Python of the deployment checks (kubectl, kubernetes-validate, hadolint).
pub fn deploy_python() -> PathBuf {
    require(root().join("venv-deploy/bin/python"), "deploy")
}

/// The demo corpus: real 720x360 photos (`scripts/setup.sh corpus`).
pub fn corpus() -> Vec<PathBuf> {
    jpegs_in("corpus/endless-sky", "corpus")
}

/// 24 larger real photos, 1280x1024 to 5120x2880, six progressive
/// (`scripts/setup.sh photos`).
pub fn photos() -> Vec<PathBuf> {
    jpegs_in("corpus/photos", "photos")
}

fn jpegs_in(dir: &str, component: &str) -> Vec<PathBuf> {
    let dir = require(root().join(dir), component);
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("photo dir")
        .map(|e| e.expect("photo entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    photos
}

/// Podman's settings for this host, written by `scripts/images.sh`, which
/// also builds the images the container tests run.
pub fn containers_conf() -> PathBuf {
    let conf = root().join("podman/containers.conf");
    assert!(
        conf.exists(),
        "{} is missing: run `scripts/images.sh` first",
        conf.display()
    );
    conf
}
